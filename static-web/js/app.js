// The dashboard's entry point: session, routing, app state, polling and the
// wiring between views and the API.

import { api, describeError, onUnauthorized } from './api.js';
import { h } from './dom.js';
import { icon } from './icons.js';
import { createPoller } from './poller.js';
import { parseRoute, hrefFor, hashQuery, isDashboardPath } from './router.js';
import { initToasts, showToast } from './toasts.js';
import { diffTransitions } from './transitions.js';
import { createAuthView, providerErrorMessage } from './views/auth.js';
import { createListView } from './views/env-list.js';
import { createDetailView } from './views/env-detail.js';
import { createAccountView } from './views/account.js';
import { createSecretsView } from './views/secrets.js';
import { createCheckMailView, createConfirmView } from './views/confirm.js';
import { refreshTimes } from './views/env-parts.js';
import { openCreateDialog } from './views/create-dialog.js';
import { confirmDelete } from './views/delete-dialog.js';

const state = {
  config: null,
  user: null,
  catalog: null,
  environments: null,
  loadError: null,
  pollError: null,
  // Dev8 did not answer the last poll: the banner shows, cards say they may
  // be out of date, polling goes on until it answers again.
  offline: false,
  pending: new Map(),
};

const root = document.getElementById('view');
const account = document.getElementById('account');
const accountName = document.getElementById('account-name');
const accountAvatar = document.getElementById('account-avatar');
const signOutButton = document.getElementById('sign-out');
const accountLink = document.getElementById('account-link');
const secretsLink = document.getElementById('secrets-link');

let route = currentRoute() ?? { name: 'list' };
let view = null;
let viewKey = '';
let returnTo = null;
let sessionNotice = null;
let knownIds = new Set();

const ctx = {
  pending: state.pending,
  get templates() { return state.catalog?.templates ?? []; },
  get limits() { return state.catalog?.limits ?? { idleTimeoutMinutes: { min: 5, max: 480, default: 30 } }; },
  /** What a `share` home is here: `network` (ACI) or `folder` (local). */
  get shareHome() { return state.catalog?.shareHome ?? 'network'; },
  onAction: runAction,
  onNew: createEnvironment,
  onUpdated: (env) => mergeEnvironment(env),
  toast: showToast,
  get stale() { return state.offline; },
  get environments() { return state.environments ?? []; },
};

/** The route for this page: the hash's, or not found on a path that is not the dashboard's. */
function currentRoute() {
  return isDashboardPath(location.pathname) ? parseRoute(location.hash) : { name: 'notFound' };
}

const poller = createPoller({
  fetchList: api.environments,
  // While the page is visible: quick while something is being created or
  // started (its progress shows each step), otherwise every 10 s, so what
  // the server did by itself (an idle stop, a failure) shows without a
  // reload, in Azure too. Hidden pages do not poll (the poller pauses on
  // `visibilitychange`). Failures back off to at most 10 s.
  intervalMs: 1500,
  slowIntervalMs: 10000,
  shouldPollSlowly: () => true,
  maxBackoffMs: 10000,
  onUpdate: setEnvironments,
  onError(error, { fatal, delayMs }) {
    if (fatal) return;
    const message = state.environments ? 'Can’t reach Dev8 to refresh statuses' : 'Can’t load your environments';
    state.pollError = `${message} — retrying in ${Math.round(delayMs / 1000)} s.`;
    setOffline(true, delayMs);
    render();
  },
});

const outage = document.getElementById('outage');
const outageText = outage.querySelector('.outage-text');
document.getElementById('outage-retry').addEventListener('click', () => poller.refresh());

/** Shows or hides the outage banner (announced once, as it appears). */
function setOffline(offline, delayMs = null) {
  const was = state.offline;
  state.offline = offline;
  outage.hidden = !offline;
  if (offline) {
    const next = delayMs ? ` Trying again in ${Math.round(delayMs / 1000)} s.` : '';
    const text = `Dev8 isn’t answering, so what you see may be out of date.${next}`;
    // Only the first sentence changes nothing a screen reader needs to hear again.
    if (!was || outageText.dataset.next !== next) {
      outageText.textContent = text;
      outageText.dataset.next = next;
    }
  } else if (was) {
    showToast({ message: 'Dev8 is answering again', tone: 'success', key: 'outage' });
  }
}

/** Replaces the known list, toasting the transitions since the last one. */
function setEnvironments(list) {
  const toasts = diffTransitions(state.environments, list);
  state.environments = list;
  state.pollError = null;
  state.loadError = null;
  setOffline(false);
  render();
  for (const toast of toasts) showToast({ ...toast, key: toast.envId });
}

/** Folds one environment from an action's answer into the list. */
function mergeEnvironment(env) {
  const list = state.environments ? [...state.environments] : [];
  const index = list.findIndex((e) => e.id === env.id);
  if (index >= 0) list[index] = env;
  else list.unshift(env);
  setEnvironments(list);
  poller.sync(list);
}

async function runAction(env, action, trigger) {
  if (action === 'open' || state.pending.has(env.id)) return;
  if (action === 'delete' && !(await confirmDelete(env))) {
    if (trigger?.isConnected) trigger.focus();
    return;
  }
  const call = { start: api.start, stop: api.stop, delete: api.remove }[action];
  if (!call) return;
  state.pending.set(env.id, action);
  render();
  try {
    mergeEnvironment(await call(env.id));
  } catch (error) {
    if (error.status === 401) return;
    const verb = { start: 'start', stop: 'stop', delete: 'delete' }[action];
    const message = error.status === 404
      ? `${env.name} no longer exists`
      : `Couldn’t ${verb} ${env.name}: ${describeError(error)}`;
    showToast({ message, tone: 'error', key: env.id });
    poller.refresh();
  } finally {
    state.pending.delete(env.id);
    render();
  }
}

async function createEnvironment() {
  if (!state.catalog) return;
  const names = (state.environments ?? []).map((e) => e.name);
  const env = await openCreateDialog(state.catalog, { existingNames: names });
  if (!env || !state.user) return;
  mergeEnvironment(env);
  showToast({ message: `Creating ${env.name}…`, tone: 'info', key: env.id });
  if (route.name === 'list') {
    root.querySelector(`[data-env-id="${CSS.escape(env.id)}"] .card-link`)?.focus();
  }
}

// ---- session ----

async function signedIn(user, { focus = true } = {}) {
  state.user = user;
  sessionNotice = null;
  showAccount();
  // An unconfirmed account sees only "check your mail" (or the link's page).
  if (!user.emailConfirmed) {
    poller.stop();
    if (route.name === 'signin' || route.name === 'signup') {
      returnTo = null;
      if (location.hash !== '#/') { location.hash = '#/'; return; }
    }
    mount(focus);
    return;
  }
  if (!state.catalog) {
    try {
      state.catalog = await api.templates();
    } catch (error) {
      if (error.status !== 401) showFatal(error, () => signedIn(user, { focus }));
      return;
    }
  }
  if (route.name === 'signin' || route.name === 'signup') {
    const target = returnTo ?? '#/';
    returnTo = null;
    if (location.hash !== target) { location.hash = target; return; } // hashchange mounts
  }
  mount(focus);
  poller.refresh();
}

function signedOut(notice) {
  poller.stop();
  state.user = null;
  state.environments = null;
  state.pollError = null;
  state.offline = false;
  outage.hidden = true;
  state.pending.clear();
  knownIds = new Set();
  sessionNotice = notice;
  showAccount();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  if (route.name !== 'signin' && route.name !== 'signup' && route.name !== 'confirm') {
    returnTo = route.name === 'list' ? null : location.hash;
    location.hash = '#/signin';
    return;
  }
  mount(true);
}

/** Sign out from the button or the "check your mail" page. */
async function signOut() {
  try {
    await api.signOut();
  } catch (error) {
    if (error.status !== 401) {
      showToast({ message: `Couldn’t sign out: ${describeError(error)}`, tone: 'error' });
      return false;
    }
  }
  returnTo = null;
  signedOut(null);
  showToast({ message: 'Signed out', tone: 'info' });
  return true;
}

onUnauthorized(() => {
  if (state.user) signedOut('Your session has ended. Sign in again to continue.');
});

signOutButton.addEventListener('click', async () => {
  signOutButton.disabled = true;
  try {
    await signOut();
  } finally {
    signOutButton.disabled = false;
  }
});

function showAccount() {
  account.hidden = !state.user;
  if (!state.user) return;
  const { name, email } = state.user;
  accountName.textContent = name || email;
  accountName.title = email;
  accountAvatar.textContent = (name || email || '?').trim().charAt(0).toUpperCase();
}

// ---- views ----

function mount(focus) {
  const unconfirmed = state.user && !state.user.emailConfirmed;
  let key = state.user ? JSON.stringify(route) : `auth:${route.name === 'signup' && state.config?.signupOpen ? 'signup' : 'signin'}`;
  if (route.name === 'confirm') key = `confirm:${location.hash}`;
  else if (unconfirmed) key = 'check-mail';
  if (key === viewKey && view) { render(); return; }
  viewKey = key;
  if (route.name === 'confirm') {
    view = createConfirmView({
      token: hashQuery(location.hash).get('token'),
      signedIn: Boolean(state.user),
      onConfirmed(user) {
        // The link may be opened where another account (or none) is signed in.
        if (state.user?.id === user.id) state.user = user;
      },
    });
    document.title = 'Confirm your email · Dev8';
  } else if (unconfirmed) {
    view = createCheckMailView({
      user: state.user,
      onSignOut: signOut,
      onDeleted() {
        returnTo = null;
        signedOut('The account was deleted.');
      },
    });
    document.title = 'Check your mail · Dev8';
  } else if (!state.user) {
    const mode = route.name === 'signup' ? 'signup' : 'signin';
    view = createAuthView({ mode, config: state.config, notice: sessionNotice, onSignedIn: signedIn });
    document.title = mode === 'signup' ? 'Sign up · Dev8' : 'Sign in · Dev8';
  } else if (route.name === 'detail') {
    view = createDetailView(route.id, ctx);
    document.title = 'Environment · Dev8';
  } else if (route.name === 'account') {
    view = createAccountView({
      user: state.user,
      providers: state.config?.providers ?? [],
      environments: () => state.environments,
      toast: showToast,
      onDeleted() {
        signedOut('Your account and its environments were deleted.');
        returnTo = null;
      },
    });
    document.title = 'Account · Dev8';
  } else if (route.name === 'secrets') {
    view = createSecretsView({ toast: showToast });
    document.title = 'Secrets · Dev8';
  } else if (route.name === 'notFound') {
    view = notFoundView();
    document.title = 'Not found · Dev8';
  } else {
    view = createListView(ctx);
    document.title = 'Environments · Dev8';
  }
  root.replaceChildren(view.el);
  render();
  if (focus) view.focusTarget?.()?.focus({ preventScroll: false });
}

function render() {
  if (accountLink) {
    if (route.name === 'account') accountLink.setAttribute('aria-current', 'page');
    else accountLink.removeAttribute('aria-current');
  }
  if (secretsLink) {
    if (route.name === 'secrets') secretsLink.setAttribute('aria-current', 'page');
    else secretsLink.removeAttribute('aria-current');
  }
  if (!view) return;
  // Leave a detail page whose environment was just deleted.
  if (state.user && route.name === 'detail' && state.environments) {
    const present = state.environments.some((e) => e.id === route.id);
    if (!present && knownIds.has(route.id)) {
      knownIds.delete(route.id);
      location.hash = '#/';
      return;
    }
  }
  if (state.environments) knownIds = new Set(state.environments.map((e) => e.id));
  view.update(state);
}

function notFoundView() {
  const el = h('section', { class: 'page' },
    h('div', { class: 'empty' },
      h('h1', { tabIndex: -1, text: 'Page not found' }),
      h('p', { text: 'There’s nothing at this address.' }),
      h('a', { class: 'btn', href: '#/', text: 'Back to environments' })));
  return { el, update() {}, focusTarget: () => el.querySelector('h1') };
}

function showFatal(error, retry) {
  view = null;
  viewKey = '';
  const button = h('button', { type: 'button', class: 'btn btn-primary', text: 'Try again' });
  button.addEventListener('click', () => { root.replaceChildren(); retry(); });
  root.replaceChildren(h('section', { class: 'page' },
    h('div', { class: 'empty' },
      icon('cloud', 'empty-icon'),
      h('h1', { text: 'Can’t reach Dev8' }),
      h('p', { text: describeError(error) }),
      button)));
}

window.addEventListener('hashchange', () => {
  const next = currentRoute();
  if (!next) return; // an in-page anchor such as the skip link
  route = next;
  if (!state.config) return;
  if (state.user && (route.name === 'signin' || route.name === 'signup')) {
    location.replace('#/');
    return;
  }
  // Confirmed from the link's page: carry on as a confirmed account.
  if (state.user?.emailConfirmed && !state.catalog && route.name !== 'confirm') {
    signedIn(state.user);
    return;
  }
  mount(true);
  if (state.user?.emailConfirmed) poller.refresh();
});

document.addEventListener('visibilitychange', () => poller.setHidden(document.hidden));
poller.setHidden(document.hidden);
setInterval(() => { if (!document.hidden) refreshTimes(root); }, 30_000);

initToasts(document.getElementById('toasts-polite'), document.getElementById('toasts-alert'));
document.querySelector('.skip-link')?.addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});

async function boot() {
  try {
    const [config, me] = await Promise.all([
      api.config(),
      api.me().catch((error) => { if (error.status === 401) return null; throw error; }),
    ]);
    state.config = config;
    if (me?.user) {
      // Back from linking a provider (`#/account?linked=<id>` or `#/account?error=<code>`).
      const result = hashQuery(location.hash);
      if (result.has('linked')) showToast({ message: 'Sign-in method linked.', tone: 'success' });
      if (result.has('error')) showToast({ message: providerErrorMessage(result.get('error')), tone: 'error' });
      if (result.has('linked') || result.has('error')) history.replaceState(null, '', location.hash.split('?')[0]);
      await signedIn(me.user, { focus: false });
    }
    else {
      if (route.name !== 'signin' && route.name !== 'signup' && route.name !== 'confirm') {
        returnTo = route.name === 'list' ? null : location.hash;
        history.replaceState(null, '', hrefFor({ name: 'signin' }));
        route = { name: 'signin' };
      }
      mount(false);
    }
  } catch (error) {
    showFatal(error, boot);
  }
}

boot();
