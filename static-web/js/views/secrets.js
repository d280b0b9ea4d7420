// The Secrets page: the names of the account's personal secrets (values are
// write-only: the API never returns them), a form to add or replace one, and
// deleting one behind a confirmation. Secrets become environment variables
// of the IDE's terminals and tasks at an environment's next start.

import { h, setText } from '../dom.js';
import { icon } from '../icons.js';
import { api, describeError } from '../api.js';
import { exactTime } from '../format.js';
import { field, formAlert, clearErrors, setFieldError, showFieldErrors } from '../forms.js';

/** Names the API accepts (it also refuses a few reserved ones, and says so). */
export const SECRET_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** `ctx`: `toast`. */
export function createSecretsView(ctx) {
  const title = h('h1', { id: 'page-title', tabIndex: -1, text: 'Secrets' });
  const subtitle = h('p', { class: 'page-subtitle', text: 'Environment variables for your IDE’s terminals and tasks, such as API tokens.' });

  // ---- the list ----
  const list = h('ul', { class: 'methods', attrs: { 'aria-labelledby': 'secrets-list-title' } });
  const status = h('p', { class: 'muted', attrs: { role: 'status' } });
  const listSection = h('section', { class: 'panel', attrs: { 'aria-labelledby': 'secrets-list-title' } },
    h('h2', { id: 'secrets-list-title', text: 'Your secrets' }),
    h('p', { class: 'muted panel-lede', text: 'Values are stored encrypted and never shown again. Changes apply the next time an environment starts.' }),
    status, list);

  async function load(focusAfter) {
    if (!list.children.length) setText(status, 'Loading…');
    let secrets;
    try {
      ({ secrets } = await api.secrets());
    } catch (error) {
      if (error.status !== 401) setText(status, `Couldn’t load your secrets: ${describeError(error)}`);
      return;
    }
    setText(status, secrets.length ? '' : 'No secrets yet.');
    list.replaceChildren(...secrets.map(row));
    focusAfter?.()?.focus();
  }

  function row(secret) {
    const remove = h('button', {
      type: 'button',
      class: 'btn btn-sm btn-danger',
      text: 'Delete',
      attrs: { 'aria-label': `Delete ${secret.name}` },
      on: { click: () => confirmDelete(secret.name, remove) },
    });
    const updated = exactTime(secret.updatedAt);
    return h('li', { class: 'method', dataset: { secret: secret.name } },
      h('div', { class: 'method-text' },
        h('p', { class: 'method-name secret-name', text: secret.name }),
        h('p', { class: 'muted', text: updated ? `set ${updated}` : '' })),
      remove);
  }

  // ---- add or replace ----
  const nameInput = h('input', { type: 'text', name: 'name', autocomplete: 'off', spellcheck: false, required: true, maxLength: 128 });
  const valueInput = h('textarea', { name: 'value', autocomplete: 'off', spellcheck: false, required: true, rows: 3 });
  const nameField = field('Name', nameInput, { id: 'secret-name', hint: 'Capital letters, digits and _, e.g. GITHUB_TOKEN. A name you already have is replaced.' });
  const valueField = field('Value', valueInput, { id: 'secret-value', hint: 'Up to 32 KB.' });
  const save = h('button', { type: 'submit', class: 'btn btn-primary' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Save secret' }));
  const form = h('form', { class: 'settings-form secret-form', noValidate: true, attrs: { 'aria-labelledby': 'secret-form-title' } },
    formAlert(), nameField.wrap, valueField.wrap, h('div', { class: 'actions' }, save));
  const formSection = h('section', { class: 'panel', attrs: { 'aria-labelledby': 'secret-form-title' } },
    h('h2', { id: 'secret-form-title', text: 'Add or replace a secret' }), form);

  nameInput.addEventListener('input', () => setFieldError(nameInput, ''));
  valueInput.addEventListener('input', () => setFieldError(valueInput, ''));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    const name = nameInput.value.trim();
    if (!SECRET_NAME.test(name)) {
      setFieldError(nameInput, 'must be capital letters, digits and _, not starting with a digit');
      nameInput.focus();
      return;
    }
    if (save.classList.contains('is-busy')) return;
    save.classList.add('is-busy');
    save.setAttribute('aria-busy', 'true');
    try {
      await api.setSecret(name, valueInput.value);
      // The value leaves the page as soon as it is stored.
      valueInput.value = '';
      nameInput.value = '';
      ctx.toast({ message: `${name} saved`, tone: 'success' });
      await load();
    } catch (error) {
      if (error.status === 401) return;
      if (!showFieldErrors(form, error.errors, { name: nameInput, value: valueInput })) {
        showFieldErrors(form, { secret: describeError(error) }, {});
      }
    } finally {
      save.classList.remove('is-busy');
      save.removeAttribute('aria-busy');
    }
  });

  // ---- delete ----
  function confirmDelete(name, trigger) {
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const confirm = h('button', { type: 'submit', class: 'btn btn-danger-solid' },
      h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
      h('span', { text: `Delete ${name}` }));
    const dialogForm = h('form', { class: 'dialog-form', noValidate: true },
      h('div', { class: 'dialog-body' },
        h('h2', { id: 'delete-secret-title', text: `Delete ${name}?` }),
        h('p', { id: 'delete-secret-desc', class: 'muted', text: 'Environments started from now on won’t have it. Running ones keep it until they stop.' }),
        formAlert()),
      h('footer', { class: 'dialog-foot' }, cancel, confirm));
    const dialog = h('dialog', {
      class: 'dialog dialog-sm',
      attrs: { 'aria-labelledby': 'delete-secret-title', 'aria-describedby': 'delete-secret-desc' },
    }, dialogForm);
    let deleted = false;
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (!deleted && trigger.isConnected) trigger.focus();
    });
    dialogForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      confirm.disabled = true;
      confirm.classList.add('is-busy');
      try {
        await api.deleteSecret(name);
        deleted = true;
        dialog.close();
        ctx.toast({ message: `${name} deleted`, tone: 'success' });
        await load(() => title);
      } catch (error) {
        if (error.status === 401) return;
        showFieldErrors(dialogForm, { secret: `was not deleted: ${describeError(error)}` }, {});
      } finally {
        confirm.disabled = false;
        confirm.classList.remove('is-busy');
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  }

  const el = h('section', { class: 'page account-page', attrs: { 'aria-labelledby': 'page-title' } },
    h('a', { class: 'back-link', href: '#/' }, icon('back'), h('span', { text: 'All environments' })),
    h('div', { class: 'page-head' }, h('div', {}, title, subtitle)),
    h('div', { class: 'account-grid' }, listSection, formSection));

  load();
  return { el, update() {}, focusTarget: () => title };
}
