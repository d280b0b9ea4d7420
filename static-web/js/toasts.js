// Toast notifications inside a polite ARIA live region (errors use an
// assertive one), auto-dismissed unless hovered or focused.

import { h } from './dom.js';
import { icon } from './icons.js';

const DURATION = { success: 6000, info: 6000, error: 10000 };
const ICONS = { success: 'check', info: 'info', error: 'alert' };

let politeRegion;
let assertiveRegion;

/** Finds the live regions in the page (call once at start). */
export function initToasts(polite, assertive) {
  politeRegion = polite;
  assertiveRegion = assertive;
}

/**
 * Shows a toast: `{ message, tone: 'success' | 'info' | 'error', key? }`.
 * A toast with a `key` replaces the one showing with the same key (one toast
 * per outcome: "…is ready" takes the place of "Creating…").
 */
export function showToast({ message, tone = 'info', key = null }) {
  const region = tone === 'error' ? assertiveRegion : politeRegion;
  if (!region) return;
  if (key !== null) {
    for (const old of document.querySelectorAll('.toast[data-key]')) {
      if (old.dataset.key === String(key)) old.remove();
    }
  }
  const close = h('button', {
    type: 'button',
    class: 'toast-close',
    attrs: { 'aria-label': 'Dismiss notification' },
  }, icon('close'));
  const toast = h('div', { class: `toast toast-${tone}`, attrs: key === null ? {} : { 'data-key': String(key) } },
    h('span', { class: 'toast-icon' }, icon(ICONS[tone] ?? 'info')),
    h('p', { class: 'toast-message', text: message }),
    close);
  let timer = null;
  let paused = false;
  const dismiss = () => {
    clearTimeout(timer);
    if (!toast.isConnected) return;
    const focusWasInside = toast.contains(document.activeElement);
    toast.classList.add('toast-leaving');
    setTimeout(() => toast.remove(), matchMedia('(prefers-reduced-motion: reduce)').matches ? 0 : 160);
    if (focusWasInside) document.getElementById('main')?.focus({ preventScroll: true });
  };
  const arm = () => {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(dismiss, DURATION[tone] ?? 6000);
  };
  close.addEventListener('click', dismiss);
  toast.addEventListener('mouseenter', () => { paused = true; clearTimeout(timer); });
  toast.addEventListener('mouseleave', () => { paused = false; arm(); });
  toast.addEventListener('focusin', () => { paused = true; clearTimeout(timer); });
  toast.addEventListener('focusout', () => { paused = false; arm(); });
  region.append(toast);
  while (region.children.length > 4) region.firstElementChild.remove();
  arm();
}
