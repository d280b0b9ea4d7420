// The HTTP API client: JSON in and out, cookie session only, problem+json
// errors turned into ApiError, and one hook for "not signed in".

/** An API failure: `status` (0 when the server could not be reached), problem fields, field `errors`. */
export class ApiError extends Error {
  constructor({ status, title, detail, errors, retryAfter }) {
    super(detail || title || `Request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.title = title ?? '';
    this.detail = detail ?? '';
    this.errors = errors ?? {};
    this.retryAfter = retryAfter ?? null;
  }
}

let unauthorizedHandler = () => {};

/** Registers what to do when any call answers 401 (except those that expect it). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * Calls `/api{path}`. Resolves to the parsed JSON body (or null for 204).
 * `expect401: true` hands a 401 back to the caller instead of signing out
 * (sign-in with bad credentials, the first `me` check).
 */
export async function request(path, { method = 'GET', body, expect401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api${path}`, init);
  } catch {
    throw new ApiError({ status: 0, title: 'Can’t reach Dev8', detail: 'Dev8 isn’t answering. Try again in a moment.' });
  }
  if (response.ok) {
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }
  const problem = await readProblem(response);
  const error = new ApiError({
    status: response.status,
    title: problem.title,
    detail: problem.detail,
    errors: problem.errors,
    retryAfter: response.headers.get('Retry-After'),
  });
  if (response.status === 401 && !expect401) unauthorizedHandler(error);
  throw error;
}

async function readProblem(response) {
  try {
    const problem = await response.json();
    return problem && typeof problem === 'object' ? problem : {};
  } catch {
    return {};
  }
}

/** A one-line message for an error, suitable for a toast or form alert. */
export function describeError(error) {
  if (!(error instanceof ApiError)) return 'Something went wrong. Please try again.';
  if (error.status === 429) {
    const wait = Number.parseInt(error.retryAfter ?? '', 10);
    return Number.isFinite(wait) ? `Too many requests. Try again in ${wait} s.` : 'Too many requests. Try again shortly.';
  }
  if (error.status >= 500) return 'Dev8 hit a server error. Please try again.';
  return error.detail || error.title || error.message;
}

export const api = {
  config: () => request('/auth/config'),
  me: () => request('/auth/me', { expect401: true }),
  signIn: (email, password) => request('/auth/signin', { method: 'POST', body: { email, password }, expect401: true }),
  signUp: (fields) => request('/auth/signup', { method: 'POST', body: fields }),
  signOut: () => request('/auth/signout', { method: 'POST', expect401: true }),
  changePassword: (currentPassword, newPassword) => request('/auth/password', { method: 'POST', body: { currentPassword, newPassword } }),
  templates: () => request('/templates'),
  environments: () => request('/environments').then((r) => r.environments),
  environment: (id) => request(`/environments/${encodeURIComponent(id)}`).then((r) => r.environment),
  create: (fields) => request('/environments', { method: 'POST', body: fields }).then((r) => r.environment),
  update: (id, fields) => request(`/environments/${encodeURIComponent(id)}`, { method: 'PATCH', body: fields }).then((r) => r.environment),
  start: (id) => request(`/environments/${encodeURIComponent(id)}/start`, { method: 'POST' }).then((r) => r.environment),
  stop: (id) => request(`/environments/${encodeURIComponent(id)}/stop`, { method: 'POST' }).then((r) => r.environment),
  remove: (id) => request(`/environments/${encodeURIComponent(id)}`, { method: 'DELETE' }).then((r) => r.environment),
  /** A page of audit records: `{records, next}`; `environmentId` narrows it to one environment. */
  audit: ({ environmentId, before, limit } = {}) => request(`/audit?${auditQuery({ environmentId, before, limit })}`),
  identities: () => request('/auth/identities'),
  unlink: (id) => request(`/auth/identities/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  /** Starts linking a provider: resolves to the URL to navigate to. */
  link: (providerId) => request(`/auth/${encodeURIComponent(providerId)}/link`, { method: 'POST' }).then((r) => r.redirect),
  deleteAccount: () => request('/auth/me', { method: 'DELETE' }),
  /** The account's secrets: `{secrets: [{name, updatedAt}]}` (never values). */
  secrets: () => request('/secrets'),
  setSecret: (name, value) => request(`/secrets/${encodeURIComponent(name)}`, { method: 'PUT', body: { value } }),
  deleteSecret: (name) => request(`/secrets/${encodeURIComponent(name)}`, { method: 'DELETE' }),
  /** The account's settings: `{dotfilesRepository}`. */
  settings: () => request('/settings'),
  changeSettings: (fields) => request('/settings', { method: 'PATCH', body: fields }),
  confirmEmail: (token) => request('/auth/confirm', { method: 'POST', body: { token } }),
  resendConfirmation: () => request('/auth/confirm/resend', { method: 'POST' }),
};

/** The query string of an audit page request (only the parameters given). */
export function auditQuery({ environmentId, before, limit }) {
  const q = new URLSearchParams();
  if (environmentId) q.set('environmentId', environmentId);
  if (before) q.set('before', before);
  if (limit) q.set('limit', String(limit));
  return q.toString();
}

/** The page navigation that opens the IDE (a real link; the server 303s to the IDE). */
export function ideHref(id) {
  return `/api/environments/${encodeURIComponent(id)}/ide`;
}

/** Where an OAuth provider's sign-in starts. */
export function providerHref(providerId) {
  return `/api/auth/${encodeURIComponent(providerId)}/start`;
}
