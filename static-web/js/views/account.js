// The account page: the ways to sign in (password, linked providers; link
// and unlink), changing the password, the dotfiles setting (`dotfiles.js`), the account's activity log with
// paging, and deleting the account behind a typed confirmation.

import { h, setText, uniqueId } from '../dom.js';
import { icon } from '../icons.js';
import { api, describeError } from '../api.js';
import { exactTime } from '../format.js';
import { field, formAlert, clearErrors, setFieldError, setFormAlert, showFieldErrors } from '../forms.js';
import { createAuditLog } from './audit-log.js';
import { createDotfilesPanel } from './dotfiles.js';

const LAST_WAY_IN = 'This is your only way to sign in, so it can’t be unlinked. Link another provider first.';

/**
 * `ctx`: `user`, `providers` (the configured ones, `{id, name}`),
 * `environments()` (the app's list, null until loaded),
 * `onDeleted()` (after the account is gone) and `toast`.
 */
export function createAccountView(ctx) {
  const title = h('h1', { id: 'page-title', tabIndex: -1, text: 'Account' });
  const subtitle = h('p', { class: 'page-subtitle', text: ctx.user.email });

  // ---- ways to sign in ----
  const methods = h('ul', { class: 'methods', attrs: { 'aria-labelledby': 'methods-title' } });
  const linkButtons = h('div', { class: 'actions' });
  const methodsStatus = h('p', { class: 'muted', attrs: { role: 'status' } });
  const signIn = h('section', { class: 'panel', attrs: { 'aria-labelledby': 'methods-title' } },
    h('h2', { id: 'methods-title', text: 'Ways to sign in' }),
    methodsStatus, methods, linkButtons);

  async function loadMethods(focusAfter) {
    setText(methodsStatus, methods.children.length ? '' : 'Loading…');
    let answer;
    try {
      answer = await api.identities();
    } catch (error) {
      if (error.status !== 401) setText(methodsStatus, `Couldn’t load your sign-in methods: ${describeError(error)}`);
      return;
    }
    setText(methodsStatus, '');
    const { identities, hasPassword } = answer;
    passwordSection.hidden = !hasPassword;
    const last = !hasPassword && identities.length === 1;
    const rows = [];
    if (hasPassword) {
      rows.push(h('li', { class: 'method' },
        h('div', { class: 'method-text' },
          h('p', { class: 'method-name', text: 'Password' }),
          h('p', { class: 'muted', text: `Your email (${ctx.user.email}) and password` }))));
    }
    for (const identity of identities) rows.push(identityRow(identity, last));
    methods.replaceChildren(...rows);
    const linked = new Set(identities.map((i) => i.provider));
    linkButtons.replaceChildren(...ctx.providers.filter((p) => !linked.has(p.id)).map((p) =>
      h('button', { type: 'button', class: 'btn', dataset: { provider: p.id }, on: { click: (e) => link(p, e.currentTarget) } },
        h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
        h('span', { text: `Link ${p.name}` }))));
    focusAfter?.()?.focus();
  }

  function providerName(id) {
    return ctx.providers.find((p) => p.id === id)?.name ?? id;
  }

  function identityRow(identity, last) {
    const name = providerName(identity.provider);
    const why = last ? h('p', { class: 'hint', id: uniqueId('why'), text: LAST_WAY_IN }) : null;
    // aria-disabled rather than disabled: it stays focusable, so keyboard and
    // screen-reader users reach the reason too.
    const unlink = h('button', {
      type: 'button',
      class: 'btn btn-sm btn-danger',
      text: 'Unlink',
      attrs: {
        'aria-label': `Unlink ${name}`,
        'aria-disabled': last ? 'true' : null,
        'aria-describedby': why?.id,
      },
      on: { click: () => { if (!last) unlinkIdentity(identity, name, unlink); } },
    });
    const linkedAt = exactTime(identity.createdAt);
    return h('li', { class: 'method', dataset: { identity: identity.id } },
      h('div', { class: 'method-text' },
        h('p', { class: 'method-name', text: name }),
        h('p', { class: 'muted', text: [identity.email, linkedAt && `linked ${linkedAt}`].filter(Boolean).join(' · ') }),
        why),
      unlink);
  }

  async function link(provider, button) {
    button.classList.add('is-busy');
    button.setAttribute('aria-busy', 'true');
    try {
      // The provider's page, then back to `#/account?linked=<id>`.
      location.assign(await api.link(provider.id));
    } catch (error) {
      if (error.status !== 401) ctx.toast({ message: `Couldn’t link ${provider.name}: ${describeError(error)}`, tone: 'error' });
      button.classList.remove('is-busy');
      button.removeAttribute('aria-busy');
    }
  }

  async function unlinkIdentity(identity, name, button) {
    if (button.getAttribute('aria-busy')) return;
    button.setAttribute('aria-busy', 'true');
    try {
      await api.unlink(identity.id);
      ctx.toast({ message: `${name} unlinked`, tone: 'success' });
      await loadMethods(() => title);
      activity.reload();
    } catch (error) {
      button.removeAttribute('aria-busy');
      if (error.status === 401) return;
      const message = error.status === 409 ? LAST_WAY_IN : describeError(error);
      ctx.toast({ message: `Couldn’t unlink ${name}: ${message}`, tone: 'error' });
      loadMethods();
    }
  }

  // ---- password ----
  const currentInput = h('input', { type: 'password', name: 'currentPassword', autocomplete: 'current-password', required: true });
  const newInput = h('input', { type: 'password', name: 'newPassword', autocomplete: 'new-password', required: true, minLength: 8, maxLength: 128 });
  const currentField = field('Current password', currentInput, { id: 'password-current' });
  const newField = field('New password', newInput, {
    id: 'password-new',
    hint: 'At least 8 characters. Common or easy-to-guess passwords are refused; a few unrelated words work well.',
  });
  const changeButton = h('button', { type: 'submit', class: 'btn' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Change password' }));
  const passwordForm = h('form', { class: 'settings-form', noValidate: true },
    formAlert(), currentField.wrap, newField.wrap, h('div', {}, changeButton));
  const passwordSection = h('section', { class: 'panel', hidden: true, attrs: { 'aria-labelledby': 'password-title' } },
    h('h2', { id: 'password-title', text: 'Change password' }),
    h('p', { class: 'muted panel-lede', text: 'You stay signed in here; every other browser and API token is signed out.' }),
    passwordForm);
  for (const input of [currentInput, newInput]) input.addEventListener('input', () => setFieldError(input, ''));
  passwordForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(passwordForm);
    if (!currentInput.value) { setFieldError(currentInput, 'Enter your current password'); currentInput.focus(); return; }
    if (newInput.value.length < 8) { setFieldError(newInput, 'Use at least 8 characters'); newInput.focus(); return; }
    changeButton.disabled = true;
    changeButton.classList.add('is-busy');
    try {
      await api.changePassword(currentInput.value, newInput.value);
      currentInput.value = '';
      newInput.value = '';
      ctx.toast({ message: 'Password changed. Your other sessions were signed out.', tone: 'success', key: 'password' });
      activity.reload();
    } catch (error) {
      if (error.status === 401) return;
      if (!showFieldErrors(passwordForm, error.errors, { currentPassword: currentInput, newPassword: newInput })) {
        setFormAlert(passwordForm, `Your password was not changed: ${describeError(error)}`);
      }
    } finally {
      changeButton.disabled = false;
      changeButton.classList.remove('is-busy');
    }
  });

  // ---- activity ----
  const activity = createAuditLog({
    label: 'Account activity, newest first',
    empty: 'Nothing recorded yet.',
    describe: (record) => ({
      providers: ctx.providers,
      subject: record.environmentId ? subjectFor(record.environmentId) : null,
    }),
  });
  const activitySection = h('section', { class: 'panel', attrs: { 'aria-labelledby': 'activity-title' } },
    h('h2', { id: 'activity-title', text: 'Activity' }),
    h('p', { class: 'muted panel-lede', text: 'Sign-ins, sign-in methods and what happened to your environments, newest first.' }),
    activity.el);

  // ---- delete ----
  const deleteButton = h('button', { type: 'button', class: 'btn btn-danger', on: { click: () => confirmDeletion(ctx, deleteButton) } },
    icon('trash'), h('span', { text: 'Delete account…' }));
  const danger = h('section', { class: 'panel panel-danger', attrs: { 'aria-labelledby': 'delete-account-title' } },
    h('h2', { id: 'delete-account-title', text: 'Delete account' }),
    h('p', { class: 'muted panel-lede', text: 'Deletes every environment with its workspace files, your sign-in methods and the account itself. This can’t be undone.' }),
    deleteButton);

  const el = h('section', { class: 'page account-page', attrs: { 'aria-labelledby': 'page-title' } },
    h('a', { class: 'back-link', href: '#/' }, icon('back'), h('span', { text: 'All environments' })),
    h('div', { class: 'page-head' }, h('div', {}, title, subtitle)),
    h('div', { class: 'account-grid' }, signIn, createDotfilesPanel(ctx), passwordSection, activitySection, danger));

  // Environment names come from the app's list; until it has arrived the
  // log says "an environment", and it is read again once names are known.
  let namesKnown = ctx.environments() !== null;
  function subjectFor(id) {
    const env = ctx.environments()?.find((e) => e.id === id);
    if (env) return env.name;
    return namesKnown ? 'an environment that no longer exists' : 'an environment';
  }

  loadMethods();
  activity.reload();

  function update(state) {
    if (!namesKnown && state.environments) {
      namesKnown = true;
      activity.reload();
    }
  }

  return { el, update, focusTarget: () => title };
}

/** The typed confirmation: the account's email, then `DELETE /api/auth/me`. */
function confirmDeletion(ctx, trigger) {
  const email = ctx.user.email;
  const input = h('input', { type: 'email', name: 'confirmEmail', autocomplete: 'off', spellcheck: false, required: true });
  const confirmField = field('Type your email to confirm', input, { id: 'delete-account-email', hint: `Type ${email}` });
  const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
  const confirm = h('button', { type: 'submit', class: 'btn btn-danger-solid' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Delete account' }));
  const form = h('form', { class: 'dialog-form', noValidate: true },
    h('div', { class: 'dialog-body' },
      h('h2', { id: 'delete-account-dialog-title', text: 'Delete your account?' }),
      h('p', { id: 'delete-account-dialog-desc', class: 'muted', text: 'Every environment and its workspace files are removed for good, and you are signed out everywhere.' }),
      formAlert(),
      confirmField.wrap),
    h('footer', { class: 'dialog-foot' }, cancel, confirm));
  const dialog = h('dialog', {
    class: 'dialog dialog-sm',
    attrs: { 'aria-labelledby': 'delete-account-dialog-title', 'aria-describedby': 'delete-account-dialog-desc' },
  }, form);

  input.addEventListener('input', () => setFieldError(input, ''));
  cancel.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (trigger.isConnected) trigger.focus();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (input.value.trim().toLowerCase() !== email.toLowerCase()) {
      setFieldError(input, `Doesn’t match ${email}`);
      input.focus();
      return;
    }
    confirm.disabled = true;
    confirm.classList.add('is-busy');
    try {
      await api.deleteAccount();
      dialog.close();
      ctx.onDeleted();
    } catch (error) {
      if (error.status === 401) return;
      setFormAlert(form, `Your account was not deleted: ${describeError(error)}`);
      form.querySelector('.form-alert').focus();
    } finally {
      confirm.disabled = false;
      confirm.classList.remove('is-busy');
    }
  });

  document.body.append(dialog);
  dialog.showModal();
  input.focus();
}
