// Pure status-transition diffing: compares two snapshots of the environment
// list and says which changes deserve a toast. No DOM, so it runs under node.

/** Statuses that are on their way somewhere; the dashboard polls while any is present. */
export const TRANSITIONAL = Object.freeze(['creating', 'starting', 'stopping', 'deleting']);

/** Whether a status is transitional. */
export function isTransitional(status) {
  return TRANSITIONAL.includes(status);
}

/** Whether any environment in the list is transitional. */
export function anyTransitional(environments) {
  return (environments ?? []).some((env) => isTransitional(env.status));
}

/**
 * Computes the toasts for the change from `previous` to `next`.
 *
 * `previous` is `null` (or `undefined`) on the first load, which never toasts:
 * the user has not seen anything change. Environments that are new in `next`
 * do not toast either. An environment that was `deleting` and is gone from
 * `next` toasts as deleted.
 *
 * Returns `[{ envId, kind, tone, message }]` where kind is one of
 * `ready | stopped | idle | failed | deleted` and tone `success | info | error`.
 */
export function diffTransitions(previous, next) {
  if (!previous) return [];
  const before = new Map(previous.map((env) => [env.id, env]));
  const toasts = [];
  const seen = new Set();
  for (const env of next ?? []) {
    seen.add(env.id);
    const old = before.get(env.id);
    if (!old || old.status === env.status) continue;
    const toast = toastFor(env);
    if (toast) toasts.push(toast);
  }
  for (const old of previous) {
    if (!seen.has(old.id) && old.status === 'deleting') {
      toasts.push({ envId: old.id, kind: 'deleted', tone: 'info', message: `${old.name} deleted` });
    }
  }
  return toasts;
}

function toastFor(env) {
  switch (env.status) {
    case 'running':
      return { envId: env.id, kind: 'ready', tone: 'success', message: `${env.name} is ready` };
    case 'stopped':
      return env.stopCause === 'idle'
        ? { envId: env.id, kind: 'idle', tone: 'info', message: `${env.name} stopped for inactivity` }
        : { envId: env.id, kind: 'stopped', tone: 'info', message: `${env.name} stopped` };
    case 'error': {
      const reason = env.statusReason ? `: ${env.statusReason}` : '';
      return { envId: env.id, kind: 'failed', tone: 'error', message: `${env.name} failed${reason}` };
    }
    default:
      return null;
  }
}
