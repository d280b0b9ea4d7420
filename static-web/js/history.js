// Audit records as sentences a person reads: an environment's history and
// the account's activity log (no DOM). Fields per action are in docs/api.md.

/** What a failed job was heading for, and what the person can do about it. */
const FAILURES = {
  running: {
    text: 'It couldn’t be started',
    advice: 'Press Start to try again; your files are kept. If it keeps failing, ask your Dev8 administrator.',
  },
  stopped: {
    text: 'It couldn’t be stopped',
    advice: 'Press Stop to try again; your files are kept.',
  },
  deleted: {
    text: 'Deleting it ran into a problem',
    advice: 'Nothing to do: Dev8 keeps retrying the deletion by itself.',
  },
};

const GENERIC_ADVICE = 'Try again; if it keeps failing, ask your Dev8 administrator.';

/** "1 minute" / "30 minutes". */
function minutes(n) {
  return `${n} ${n === 1 ? 'minute' : 'minutes'}`;
}

/** The idle timeout an idle stop honoured: its own field, or older records' detail. */
function idleMinutes(record) {
  if (Number.isInteger(record.idleTimeoutMinutes)) return record.idleTimeoutMinutes;
  const match = /idle for (\d+) minutes?/.exec(record.detail ?? '');
  return match ? Number(match[1]) : null;
}

/** The provider part of a sign-in or link detail ("github: explicit" → "github"). */
function providerOf(record, providers) {
  const id = (record.detail ?? '').split(':')[0].trim();
  if (!id) return null;
  if (id.startsWith('password')) return 'password';
  return providers?.find((p) => p.id === id)?.name ?? id;
}

/**
 * One record as `{ text, tone, cause?, advice? }`: `tone` is "error" for
 * failures; `cause` and `advice` say why and what to do.
 *
 * `options.subject` names the environment in the account log ("hello-node";
 * the environment's own history leaves it out and says "it"). `providers`
 * is `/api/auth/config`'s list, for provider names.
 */
export function describeRecord(record, { subject = null, providers = [] } = {}) {
  const it = subject ? subject : 'this environment';
  const It = subject ? subject : 'It';
  const failed = record.outcome === 'failure';
  switch (record.action) {
    case 'environment.create':
      return { text: `You created ${it}`, tone: 'info' };
    case 'environment.start':
      return { text: `You started ${it}`, tone: 'info' };
    case 'environment.stop':
      return { text: `You stopped ${it}`, tone: 'info' };
    case 'environment.delete':
      return { text: `You deleted ${it}`, tone: 'info' };
    case 'ide.open':
      return { text: subject ? `You opened VS Code in ${subject}` : 'You opened VS Code', tone: 'info' };
    case 'environment.idle_stop': {
      const n = idleMinutes(record);
      return {
        text: n === null
          ? `${It} was stopped for inactivity`
          : `${It} was stopped for inactivity after ${minutes(n)} without use`,
        tone: 'info',
      };
    }
    case 'environment.clone_failed':
      return {
        text: `${It} started without its repository: the clone failed`,
        tone: 'error',
        cause: record.detail || 'No cause was recorded.',
        advice: 'Check the repository’s address and ref; you can clone it yourself from the terminal.',
      };
    case 'environment.final_snapshot_missed':
      return {
        text: `${It} was stopped without its final snapshot`,
        tone: 'error',
        cause: record.detail || 'No cause was recorded.',
        advice: 'Its home comes back from the last snapshot taken while it ran: work saved after that may be missing.',
      };
    case 'job.failure': {
      const known = FAILURES[record.desiredState];
      const text = known ? known.text.replace(/^It\b/, It) : `${It} ran into a problem`;
      return {
        text,
        tone: 'error',
        cause: record.reason || record.detail || 'No cause was recorded.',
        advice: known?.advice ?? GENERIC_ADVICE,
      };
    }
    case 'auth.signup':
      return { text: 'Your account was created', tone: 'info' };
    case 'auth.signin': {
      const via = providerOf(record, providers);
      if (failed) return { text: 'A sign-in to your account failed', tone: 'error', cause: record.detail ?? undefined };
      return { text: via && via !== 'password' ? `You signed in with ${via}` : 'You signed in with your password', tone: 'info' };
    }
    case 'auth.signout':
      return { text: 'You signed out', tone: 'info' };
    case 'auth.confirm':
      return { text: 'You confirmed your email address', tone: 'info' };
    case 'auth.password':
      if (failed) return { text: 'A password change failed: the current password was wrong', tone: 'error' };
      return { text: 'You changed your password; your other sessions were signed out', tone: 'info' };
    case 'identity.link': {
      const via = providerOf(record, providers) ?? 'a provider';
      if (failed) return { text: `Linking ${via} failed`, tone: 'error', cause: record.detail ?? undefined };
      return { text: `You linked ${via} as a way to sign in`, tone: 'info' };
    }
    case 'identity.unlink':
      return { text: `You unlinked ${providerOf(record, providers) ?? 'a provider'}`, tone: 'info' };
    case 'secret.set':
      return { text: `You set the secret ${record.detail ?? ''}`.trim(), tone: 'info' };
    case 'secret.deleted':
      return { text: `You deleted the secret ${record.detail ?? ''}`.trim(), tone: 'info' };
    case 'settings.dotfiles':
      return {
        text: record.detail ? `You set your dotfiles repository to ${record.detail}` : 'You removed your dotfiles repository',
        tone: 'info',
      };
    default:
      return { text: record.action, tone: failed ? 'error' : 'info', cause: record.detail ?? undefined };
  }
}
