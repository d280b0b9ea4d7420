// The confirm dialog before deleting an environment.

import { h } from '../dom.js';

/** Asks whether to delete `env`; resolves to true for "Delete", false otherwise. */
export function confirmDelete(env) {
  const cancel = h('button', { type: 'submit', class: 'btn', value: 'cancel', text: 'Cancel' });
  const confirm = h('button', { type: 'submit', class: 'btn btn-danger-solid', value: 'delete', text: 'Delete' });
  const dialog = h('dialog', {
    class: 'dialog dialog-sm',
    attrs: { 'aria-labelledby': 'delete-title', 'aria-describedby': 'delete-desc' },
  },
  h('form', { method: 'dialog', class: 'dialog-form' },
    h('div', { class: 'dialog-body' },
      h('h2', { id: 'delete-title' }, 'Delete ', h('strong', { text: env.name }), '?'),
      h('p', { id: 'delete-desc', class: 'muted', text: 'The environment and its workspace files are removed for good. This can’t be undone.' })),
    h('footer', { class: 'dialog-foot' }, cancel, confirm)));

  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const yes = dialog.returnValue === 'delete';
      dialog.remove();
      resolve(yes);
    });
    document.body.append(dialog);
    dialog.returnValue = '';
    dialog.showModal();
    cancel.focus();
  });
}
