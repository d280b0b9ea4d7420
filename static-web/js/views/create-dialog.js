// The "New environment" dialog: name, template, size, idle timeout and an
// optional Git repository to start from, with hints that match the API's
// validation and server errors under each field.

import { h } from '../dom.js';
import { icon } from '../icons.js';
import { api, describeError } from '../api.js';
import { sizeLabel } from '../format.js';
import { field, formAlert, clearErrors, setFieldError, showFieldErrors, setFormAlert } from '../forms.js';

/**
 * Opens the dialog. `catalog` is the GET /api/templates answer. Resolves to
 * the created environment, or null when cancelled.
 */
export function openCreateDialog(catalog, { existingNames = [] } = {}) {
  const { templates, presets, limits } = catalog;
  const idle = limits.idleTimeoutMinutes;
  const nameMax = limits.name?.max ?? 50;

  const name = h('input', {
    type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: false,
    value: suggestName(existingNames),
  });
  const template = h('select', { name: 'baseImage', required: true },
    templates.map((t) => h('option', { value: t.id, text: t.displayName })));
  const size = h('select', { name: 'preset', required: true },
    presets.map((p) => h('option', { value: p.id, text: `${p.displayName} · ${p.cpuCores} CPU · ${p.memoryGB} GB` })));
  const timeout = h('input', {
    type: 'number', name: 'idleTimeoutMinutes', required: true, inputMode: 'numeric',
    min: String(idle.min), max: String(idle.max), step: '1', value: String(idle.default),
  });

  const repoUrl = h('input', {
    type: 'url', name: 'repositoryUrl', autocomplete: 'off', spellcheck: false, inputMode: 'url',
    placeholder: 'https://github.com/owner/repo.git',
  });
  const repoRef = h('input', {
    type: 'text', name: 'repositoryRef', autocomplete: 'off', spellcheck: false, placeholder: 'default branch',
  });
  const repoUrlField = field('Git repository (optional)', repoUrl, {
    id: 'create-repo-url',
    hint: 'A public https:// repository, cloned into the workspace on the first start; VS Code opens on it.',
  });
  const repoRefField = field('Branch, tag or commit (optional)', repoRef, { id: 'create-repo-ref' });

  const nameField = field('Name', name, { id: 'create-name', hint: `1–${nameMax} characters. You can change it later.` });
  const templateField = field('Template', template, { id: 'create-template', hint: templates[0]?.description ?? '' });
  const sizeField = field('Size', size, { id: 'create-size', hint: ' ' });
  const timeoutField = field('Idle timeout (minutes)', timeout, {
    id: 'create-idle',
    hint: `Stops automatically after this long without activity, so nothing runs forgotten (${idle.min}–${idle.max}).`,
  });
  const describe = () => {
    const chosen = templates.find((t) => t.id === template.value);
    templateField.hint.textContent = chosen?.description || `Base image: ${chosen?.image ?? template.value}`;
  };
  const describeSize = () => {
    const chosen = presets.find((p) => p.id === size.value);
    sizeField.hint.textContent = chosen ? `${sizeLabel(chosen)}. Files stay on the disk while stopped.` : '';
  };
  template.addEventListener('change', describe);
  size.addEventListener('change', describeSize);
  describe();
  const defaultPreset = presets.find((p) => p.id === 'small') ?? presets[0];
  if (defaultPreset) size.value = defaultPreset.id;
  describeSize();

  const submit = h('button', { type: 'submit', class: 'btn btn-primary' },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Create environment' }));
  const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
  const close = h('button', { type: 'button', class: 'icon-btn', attrs: { 'aria-label': 'Close' } }, icon('close'));

  const form = h('form', { class: 'dialog-form', noValidate: true },
    h('header', { class: 'dialog-head' },
      h('h2', { id: 'create-title', text: 'New environment' }),
      close),
    h('div', { class: 'dialog-body' },
      formAlert(),
      nameField.wrap,
      h('div', { class: 'field-row' }, templateField.wrap, sizeField.wrap),
      timeoutField.wrap,
      repoUrlField.wrap,
      repoRefField.wrap),
    h('footer', { class: 'dialog-foot' }, cancel, submit));
  const dialog = h('dialog', { class: 'dialog', attrs: { 'aria-labelledby': 'create-title' } }, form);

  const controls = {
    name, baseImage: template, preset: size, cpuCores: size, memoryGB: size, storageGB: size,
    idleTimeoutMinutes: timeout,
    repository: repoUrl, 'repository.url': repoUrl, 'repository.ref': repoRef,
  };
  for (const control of [name, template, size, timeout, repoUrl, repoRef]) {
    control.addEventListener('input', () => setFieldError(control, ''));
  }

  return new Promise((resolve) => {
    let result = null;
    let busy = false;
    const finish = () => { if (!busy) dialog.close(); };
    cancel.addEventListener('click', finish);
    close.addEventListener('click', finish);
    dialog.addEventListener('cancel', (event) => { if (busy) event.preventDefault(); });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy) return;
      clearErrors(form);
      const problems = validate();
      if (Object.keys(problems).length) {
        showFieldErrors(form, problems, controls);
        return;
      }
      busy = true;
      submit.disabled = true;
      submit.classList.add('is-busy');
      try {
        const fields = {
          name: name.value.trim(),
          baseImage: template.value,
          preset: size.value,
          idleTimeoutMinutes: Number(timeout.value),
        };
        if (repoUrl.value.trim()) {
          fields.repository = { url: repoUrl.value.trim() };
          if (repoRef.value.trim()) fields.repository.ref = repoRef.value.trim();
        }
        result = await api.create(fields);
        busy = false;
        finish();
      } catch (error) {
        busy = false;
        if (error.status === 401) { finish(); return; }
        // Field errors come with 400 (invalid) and 409 (e.g. the name is taken).
        if (Object.keys(error.errors).length) showFieldErrors(form, error.errors, controls);
        else if (error.status === 409 && /name/i.test(`${error.detail} ${error.title}`)) {
          setFieldError(name, error.detail || 'is already taken');
          name.focus();
        } else {
          setFormAlert(form, describeError(error));
          form.querySelector('.form-alert').focus();
        }
      } finally {
        submit.disabled = false;
        submit.classList.remove('is-busy');
      }
    });

    function validate() {
      const problems = {};
      const trimmed = name.value.trim();
      if (trimmed.length < 1) problems.name = 'Give it a name';
      else if (trimmed.length > nameMax) problems.name = `must be at most ${nameMax} characters`;
      else if (existingNames.some((n) => n.toLowerCase() === trimmed.toLowerCase())) problems.name = `You already have an environment called ${trimmed}: pick another name`;
      const minutes = Number(timeout.value);
      if (!timeout.value.trim() || !Number.isInteger(minutes) || minutes < idle.min || minutes > idle.max) {
        problems.idleTimeoutMinutes = `must be between ${idle.min} and ${idle.max}`;
      }
      // The URL's rules are the server's (its errors show under the field).
      if (!repoUrl.value.trim() && repoRef.value.trim()) problems['repository.ref'] = 'needs a repository';
      return problems;
    }

    document.body.append(dialog);
    dialog.showModal();
    name.focus();
    name.select();
  });
}

/** A friendly default name not already in use: "my-env", "my-env-2", ... */
function suggestName(existing) {
  const taken = new Set(existing);
  if (!taken.has('my-env')) return 'my-env';
  for (let i = 2; ; i++) if (!taken.has(`my-env-${i}`)) return `my-env-${i}`;
}
