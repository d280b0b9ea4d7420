// The account page's dotfiles panel: the account setting `dotfilesRepository`
// (GET/PATCH /api/settings). Each new environment clones it to ~/.dotfiles on
// its first start and runs its install script once.

import { h, setText } from '../dom.js';
import { api, describeError } from '../api.js';
import { field, formAlert, clearErrors, setFieldError, showFieldErrors, setFormAlert } from '../forms.js';

/** `ctx`: `toast`. Returns the panel element. */
export function createDotfilesPanel(ctx) {
  const url = h('input', {
    type: 'url', name: 'dotfilesRepository', autocomplete: 'off', spellcheck: false, inputMode: 'url',
    placeholder: 'https://github.com/you/dotfiles',
  });
  const urlField = field('Dotfiles repository', url, {
    id: 'dotfiles-url',
    hint: 'A public https:// repository. New environments clone it to ~/.dotfiles on their first start and run the first of install.sh, bootstrap.sh or setup.sh once; its output is in ~/.dotfiles.log. Leave empty for none.',
  });
  const status = h('p', { class: 'muted', attrs: { role: 'status' } });
  const save = h('button', { type: 'submit', class: 'btn' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Save' }));
  const form = h('form', { class: 'dotfiles-form', noValidate: true },
    formAlert(), urlField.wrap, h('div', { class: 'actions' }, save));
  const el = h('section', { class: 'panel', attrs: { 'aria-labelledby': 'dotfiles-title' } },
    h('h2', { id: 'dotfiles-title', text: 'Dotfiles' }), status, form);

  url.addEventListener('input', () => setFieldError(url, ''));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    // The URL's rules are the server's (its errors show under the field).
    const value = url.value.trim();
    save.disabled = true;
    save.classList.add('is-busy');
    try {
      const saved = await api.changeSettings({ dotfilesRepository: value || null });
      url.value = saved.dotfilesRepository ?? '';
      ctx.toast({ message: saved.dotfilesRepository ? 'Dotfiles saved' : 'Dotfiles removed', tone: 'success' });
    } catch (error) {
      if (error.status === 401) return;
      if (!showFieldErrors(form, error.errors, { dotfilesRepository: url })) {
        setFormAlert(form, describeError(error));
      }
    } finally {
      save.disabled = false;
      save.classList.remove('is-busy');
    }
  });

  (async () => {
    setText(status, 'Loading…');
    try {
      const settings = await api.settings();
      url.value = settings.dotfilesRepository ?? '';
      setText(status, '');
    } catch (error) {
      if (error.status !== 401) setText(status, `Couldn’t load your settings: ${describeError(error)}`);
    }
  })();

  return el;
}
