// The confirm dialog before deleting an environment: as a safeguard the
// person types the environment's name (as Coder asks) before Delete works.

import { h } from '../dom.js';
import { field } from '../forms.js';

/** Asks whether to delete `env`; resolves to true for "Delete", false otherwise. */
export function confirmDelete(env) {
  const input = h('input', {
    type: 'text', name: 'confirmName', autocomplete: 'off', spellcheck: false,
    attrs: { autocapitalize: 'off' },
  });
  const typed = field(`Type ${env.name} to confirm`, input, { id: 'delete-confirm-name' });
  const cancel = h('button', { type: 'submit', class: 'btn', value: 'cancel', text: 'Cancel', formNoValidate: true });
  const confirm = h('button', { type: 'submit', class: 'btn btn-danger-solid', value: 'delete', text: 'Delete', disabled: true });
  const dialog = h('dialog', {
    class: 'dialog dialog-sm',
    attrs: { 'aria-labelledby': 'delete-title', 'aria-describedby': 'delete-desc' },
  },
  h('form', { method: 'dialog', class: 'dialog-form' },
    h('div', { class: 'dialog-body' },
      h('h2', { id: 'delete-title' }, 'Delete ', h('strong', { text: env.name }), '?'),
      h('p', { id: 'delete-desc', class: 'muted', text: 'The environment and its workspace files are removed for good. This can’t be undone.' }),
      typed.wrap),
    h('footer', { class: 'dialog-foot' }, cancel, confirm)));

  const matches = () => input.value === env.name;
  input.addEventListener('input', () => { confirm.disabled = !matches(); });
  // Enter deletes only once the name matches (the form's first button is Cancel).
  input.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    event.preventDefault();
    if (matches()) dialog.close('delete');
  });

  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const yes = dialog.returnValue === 'delete' && matches();
      dialog.remove();
      resolve(yes);
    });
    document.body.append(dialog);
    dialog.returnValue = '';
    dialog.showModal();
    input.focus();
  });
}
