// Form field building and error display: labels, hints and server field
// errors from a problem+json `errors` map, wired with aria-describedby.

import { h, uniqueId } from './dom.js';

/**
 * A labelled field: returns `{ wrap, input, error }`. `control` is an
 * existing input/select element; `hint` is optional text under it.
 */
export function field(labelText, control, { hint, id } = {}) {
  control.id = id || control.id || uniqueId('field');
  control.dataset.label = labelText.replace(/\s*\(.*\)$/, '');
  const described = [];
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint`, text: hint }) : null;
  if (hintEl) described.push(hintEl.id);
  const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
  control.dataset.describedBy = described.join(' ');
  if (described.length) control.setAttribute('aria-describedby', described.join(' '));
  const wrap = h('div', { class: 'field' }, h('label', { htmlFor: control.id, text: labelText }), control, hintEl, error);
  control.fieldError = error;
  return { wrap, input: control, error, hint: hintEl };
}

/**
 * Shows (or with an empty message, clears) the error under a field's control.
 * The API's messages read as predicates ("must be 1-50 characters"), so they
 * are shown after the field's label: "Name must be 1-50 characters".
 */
export function setFieldError(control, message) {
  const error = control.fieldError;
  if (!error) return;
  if (message && /^[a-z]/.test(message)) message = `${control.dataset.label} ${message}`;
  const ids = (control.dataset.describedBy ?? '').split(' ').filter(Boolean);
  if (message) {
    error.replaceChildren(h('span', { class: 'visually-hidden', text: 'Error: ' }), message);
    error.hidden = false;
    control.setAttribute('aria-invalid', 'true');
    ids.push(error.id);
  } else {
    error.replaceChildren();
    error.hidden = true;
    control.removeAttribute('aria-invalid');
  }
  if (ids.length) control.setAttribute('aria-describedby', ids.join(' '));
  else control.removeAttribute('aria-describedby');
}

/** Clears every field error and the form alert. */
export function clearErrors(form) {
  for (const control of form.querySelectorAll('[aria-invalid]')) setFieldError(control, '');
  const alert = form.querySelector('.form-alert');
  if (alert) { alert.hidden = true; alert.replaceChildren(); }
}

/** Shows a message in the form's alert box (role="alert"). */
export function setFormAlert(form, message, tone = 'error') {
  const alert = form.querySelector('.form-alert');
  if (!alert) return;
  alert.className = `form-alert form-alert-${tone}`;
  alert.replaceChildren(message);
  alert.hidden = !message;
}

/**
 * Puts each `errors[key]` under the control `controls[key]`; keys with no
 * control are gathered into the form alert. Focuses the first invalid
 * control. Returns true when anything was shown.
 */
export function showFieldErrors(form, errors, controls) {
  const leftovers = [];
  let first = null;
  for (const [key, message] of Object.entries(errors ?? {})) {
    const control = controls[key];
    if (control) {
      if (!control.getAttribute('aria-invalid')) setFieldError(control, message);
      first ??= control;
    } else {
      leftovers.push(`${key} ${message}`);
    }
  }
  if (leftovers.length) setFormAlert(form, leftovers.join('. '));
  (first ?? form.querySelector('.form-alert:not([hidden])'))?.focus?.();
  return Boolean(first || leftovers.length);
}

/** The alert box placed at the top of a form. */
export function formAlert() {
  return h('div', { class: 'form-alert', hidden: true, tabIndex: -1, attrs: { role: 'alert' } });
}
