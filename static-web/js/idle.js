// The idle-stop warning: the API gives `idleStopAt` and `idleWarningAt` for
// an environment meant to run; from the warning time on, the card says when
// it stops unless used. Any use moves both times (the next poll shows it).

/** The warning to show for `env` at `now` (ms), or null. */
export function idleWarning(env, now = Date.now()) {
  if (env.status !== 'running' || !env.idleStopAt || !env.idleWarningAt) return null;
  const stop = Date.parse(env.idleStopAt);
  if (now < Date.parse(env.idleWarningAt) || now >= stop) return null;
  const minutes = Math.max(1, Math.round((stop - now) / 60_000));
  return `Stops for inactivity in about ${minutes} min unless it is used. Open the IDE to keep it running; files are kept either way.`;
}
