// Hash routes: #/ (environments), #/environments/<id>, #/account, #/secrets, #/signin, #/signup,
// #/confirm?token=… (the link mailed to confirm an email address).

/** Whether a page path is the dashboard's own ("/" or "/index.html"); anything else is not found. */
export function isDashboardPath(pathname) {
  return pathname === '/' || pathname === '/index.html';
}

/** Parses a location hash into a route. Hashes not starting with "#/" return null (in-page anchors). */
export function parseRoute(hash) {
  if (!hash || hash === '#') return { name: 'list' };
  if (!hash.startsWith('#/')) return null;
  const path = hash.slice(2).split('?')[0].replace(/\/+$/, '');
  if (path === '' || path === 'environments') return { name: 'list' };
  if (path === 'signin') return { name: 'signin' };
  if (path === 'signup') return { name: 'signup' };
  if (path === 'account') return { name: 'account' };
  if (path === 'secrets') return { name: 'secrets' };
  if (path === 'confirm') return { name: 'confirm' };
  const match = /^environments\/([^/]+)$/.exec(path);
  if (match) return { name: 'detail', id: decodeURIComponent(match[1]) };
  return { name: 'notFound' };
}

/** The hash for a route. */
export function hrefFor(route) {
  switch (route.name) {
    case 'detail': return `#/environments/${encodeURIComponent(route.id)}`;
    case 'signin': return '#/signin';
    case 'signup': return '#/signup';
    case 'account': return '#/account';
    case 'secrets': return '#/secrets';
    default: return '#/';
  }
}

/** The query parameters after "?" in a hash (e.g. "#/signin?error=x"). */
export function hashQuery(hash) {
  const i = (hash ?? '').indexOf('?');
  return new URLSearchParams(i < 0 ? '' : hash.slice(i + 1));
}
