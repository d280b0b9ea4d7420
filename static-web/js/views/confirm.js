// Confirming an email address (password sign-up under an email-domain
// allowlist): the "check your mail" page an unconfirmed account sees instead
// of everything else, and the landing page of the mailed link
// (`#/confirm?token=…`).

import { h } from '../dom.js';
import { logo } from '../icons.js';
import { api, describeError } from '../api.js';
import { formAlert, setFormAlert } from '../forms.js';

function card(title, ...children) {
  return h('section', { class: 'auth', attrs: { 'aria-labelledby': 'page-title' } },
    h('div', { class: 'auth-card' },
      logo('auth-logo'),
      h('h1', { id: 'page-title', tabIndex: -1, text: title }),
      ...children));
}

function busy(button, on) {
  button.disabled = on;
  button.classList.toggle('is-busy', on);
}

/**
 * What an unconfirmed account sees: where the link went, a new link,
 * sign-out and deleting the account (the only things it may do).
 */
export function createCheckMailView({ user, onSignOut, onDeleted }) {
  const alert = formAlert();
  const resend = h('button', { type: 'button', class: 'btn btn-primary btn-block' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Send a new link' }));
  const signOut = h('button', { type: 'button', class: 'btn btn-block', text: 'Sign out' });
  const remove = h('button', { type: 'button', class: 'btn btn-block btn-danger', text: 'Delete this account' });
  const panel = h('div', { class: 'auth-form' }, alert, resend, signOut, remove);
  const el = card('Check your mail',
    h('p', { class: 'auth-lede' }, 'We sent a link to ', h('strong', { text: user.email }),
      '. Open it to confirm the address; until then this account can’t do anything else. The link works once, for 24 hours.'),
    h('p', { class: 'muted', text: 'Nothing arrived? Look in your spam folder, or send a new link (the old one then stops working).' }),
    panel);

  resend.addEventListener('click', async () => {
    busy(resend, true);
    try {
      await api.resendConfirmation();
      setFormAlert(panel, `A new link is on its way to ${user.email}.`, 'info');
    } catch (error) {
      setFormAlert(panel, describeError(error));
    } finally {
      busy(resend, false);
    }
  });
  signOut.addEventListener('click', () => onSignOut());
  remove.addEventListener('click', async () => {
    busy(remove, true);
    try {
      await api.deleteAccount();
      onDeleted();
    } catch (error) {
      setFormAlert(panel, describeError(error));
      busy(remove, false);
    }
  });
  return { el, update() {}, focusTarget: () => el.querySelector('h1') };
}

/**
 * The mailed link's landing page: confirms once, then `onConfirmed(user)`
 * (the dashboard continues if this browser is signed in to that account).
 */
export function createConfirmView({ token, signedIn, onConfirmed }) {
  const status = h('p', { class: 'auth-lede', attrs: { role: 'status' }, text: 'Confirming your email address…' });
  const next = h('p', {});
  const el = card('Confirm your email', status, next);
  (async () => {
    if (!token) {
      status.textContent = 'This link has no confirmation code. Open the link from the mail again.';
      return;
    }
    try {
      const body = await api.confirmEmail(token);
      status.textContent = 'Your email address is confirmed.';
      next.replaceChildren(h('a', { class: 'btn btn-primary', href: signedIn ? '#/' : '#/signin', text: signedIn ? 'Continue to Dev8' : 'Sign in' }));
      onConfirmed(body.user);
    } catch (error) {
      status.textContent = error.status === 400
        ? 'This link was used already, replaced by a newer one, or has expired. Sign in and send a new link (or sign up again if a day has passed).'
        : describeError(error);
      next.replaceChildren(h('a', { class: 'btn', href: '#/', text: 'Back to Dev8' }));
    }
  })();
  return { el, update() {}, focusTarget: () => el.querySelector('h1') };
}
