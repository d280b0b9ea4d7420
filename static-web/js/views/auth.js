// The signed-out page: sign in or sign up (when open), plus OAuth providers.

import { h } from '../dom.js';
import { logo } from '../icons.js';
import { api, describeError, providerHref } from '../api.js';
import { field, formAlert, clearErrors, setFieldError, showFieldErrors, setFormAlert } from '../forms.js';
import { hashQuery } from '../router.js';

const PROVIDER_ERRORS = {
  access_denied: 'Sign-in was cancelled at the provider.',
  provider_rejected: 'The provider refused the sign-in (it may have expired or been used already). Please try again.',
  provider_unavailable: 'The sign-in provider can’t be reached right now. Try again in a moment.',
  invalid_token: 'The provider’s answer could not be verified, so you were not signed in.',
  account_exists: 'An account with this email already exists. Sign in with your password, then link this provider from your account.',
  signup_closed: 'Sign-up is closed, so no new account can be created for you. Ask your Dev8 administrator.',
  email_required: 'The provider did not share an email address, which Dev8 needs for a new account.',
  identity_in_use: 'That sign-in is already linked to another Dev8 account.',
  account_gone: 'Your account no longer exists.',
  try_again: 'Something changed while signing you in. Please try again.',
};

/** What to tell the person for an error code from a provider sign-in (`#/signin?error=<code>`). */
export function providerErrorMessage(code) {
  return PROVIDER_ERRORS[code] ?? 'Signing in with the provider failed. Please try again.';
}

/**
 * Creates the sign-in (`mode` "signin") or sign-up ("signup") view.
 * `onSignedIn(user)` is called after success; `notice` is an optional info
 * message (e.g. "your session ended").
 */
export function createAuthView({ mode, config, notice, onSignedIn }) {
  const signup = mode === 'signup' && config.signupOpen;
  const providers = config.providers ?? [];

  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email', spellcheck: false });
  const password = h('input', {
    type: 'password', name: 'password', required: true,
    autocomplete: signup ? 'new-password' : 'current-password',
  });
  const name = signup ? h('input', { type: 'text', name: 'name', autocomplete: 'name' }) : null;
  // A new deployment's first account needs the server's setup code.
  const setupCode = signup && config.setupCodeRequired
    ? h('input', { type: 'text', name: 'setupCode', required: true, autocomplete: 'off', spellcheck: false })
    : null;
  const fields = [
    name && field('Name (optional)', name, { id: 'auth-name' }).wrap,
    field('Email', email, { id: 'auth-email' }).wrap,
    field('Password', password, { id: 'auth-password', hint: signup ? 'At least 8 characters. Use a long password you don’t use anywhere else.' : undefined }).wrap,
    setupCode && field('Setup code', setupCode, { id: 'auth-setup-code', hint: 'This server has no account yet: the operator reads its setup code from Key Vault (docs/deploy.md).' }).wrap,
  ];
  const submitLabel = signup ? 'Sign up' : 'Sign in';
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: submitLabel }));
  const form = h('form', { class: 'auth-form', noValidate: true }, formAlert(), fields, submit);
  const controls = { email, password, name, setupCode };
  for (const control of [email, password, name, setupCode].filter(Boolean)) {
    control.addEventListener('input', () => setFieldError(control, ''));
  }

  const providerList = providers.length
    ? [
      h('div', { class: 'providers' }, providers.map((p) => h('a', {
        class: 'btn btn-block btn-provider',
        href: providerHref(p.id),
        text: `Continue with ${p.name}`,
      }))),
      h('p', { class: 'divider' }, h('span', { text: 'or' })),
    ]
    : null;

  let switcher = null;
  if (signup) switcher = h('p', { class: 'auth-switch' }, 'Already have an account? ', h('a', { href: '#/signin', text: 'Sign in' }));
  else if (config.signupOpen) switcher = h('p', { class: 'auth-switch' }, 'New to Dev8? ', h('a', { href: '#/signup', text: 'Create an account' }));
  else switcher = h('p', { class: 'auth-switch muted', text: 'Sign-up is closed. Ask your Dev8 administrator for an account.' });

  const heading = signup ? 'Create your Dev8 account' : 'Sign in to Dev8';
  const el = h('section', { class: 'auth', attrs: { 'aria-labelledby': 'page-title' } },
    h('div', { class: 'auth-card' },
      logo('auth-logo'),
      h('h1', { id: 'page-title', tabIndex: -1, text: heading }),
      h('p', { class: 'muted auth-lede', text: 'Cloud development environments with VS Code in your browser.' }),
      providerList,
      form,
      switcher));

  if (notice) setFormAlert(form, notice, 'info');
  // Back from a provider with an error: explain it once, then tidy the address.
  const providerError = hashQuery(location.hash).get('error');
  if (providerError) {
    setFormAlert(form, providerErrorMessage(providerError));
    history.replaceState(null, '', location.hash.split('?')[0]);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    const problems = {};
    if (!email.value.trim()) problems.email = 'is required';
    else if (!email.validity.valid) problems.email = 'must be a valid email address';
    if (!password.value) problems.password = 'is required';
    if (setupCode && !setupCode.value.trim()) problems.setupCode = 'is required';
    if (Object.keys(problems).length) {
      showFieldErrors(form, problems, controls);
      return;
    }
    submit.disabled = true;
    submit.classList.add('is-busy');
    try {
      const body = signup
        ? await api.signUp({
          email: email.value.trim(),
          password: password.value,
          ...(name.value.trim() ? { name: name.value.trim() } : {}),
          ...(setupCode ? { setupCode: setupCode.value.trim() } : {}),
        })
        : await api.signIn(email.value.trim(), password.value);
      onSignedIn(body.user);
    } catch (error) {
      if (Object.keys(error.errors).length) showFieldErrors(form, error.errors, controls);
      else if (error.status === 409 && signup) {
        setFieldError(email, error.detail && !/^[A-Z]/.test(error.detail) ? error.detail : 'is already registered — sign in instead');
        email.focus();
      } else {
        const message = error.status === 401 ? 'Wrong email or password.' : describeError(error);
        setFormAlert(form, message);
        form.querySelector('.form-alert').focus();
      }
      password.value = error.status === 401 ? '' : password.value;
    } finally {
      submit.disabled = false;
      submit.classList.remove('is-busy');
    }
  });

  return { el, update() {}, focusTarget: () => email };
}
