// Pieces shared by the environment card and the detail view: status badge,
// progress line (with the step a create or start is at), usage, template
// tile, times and the action bar.

import { h, setText } from '../dom.js';
import { icon } from '../icons.js';
import { ideHref } from '../api.js';
import { exactTime, relativeTime, statusLabel, statusTone } from '../format.js';
import { isTransitional } from '../transitions.js';
import { progressText, snapshotFigures, usageFigures } from '../usage.js';

const PROGRESS_TEXT = {
  creating: 'Setting up your environment — this can take a minute.',
  starting: 'Booting the container and VS Code…',
  stopping: 'Shutting down. Your files are kept.',
  deleting: 'Removing the environment and its files…',
};

const TILE_TEXT = { node: 'JS', python: 'Py', golang: 'Go' };

/** The coloured status badge; transitional statuses carry a spinner. */
export function statusBadge() {
  return h('span', { class: 'badge' });
}

export function updateStatusBadge(badge, status) {
  const tone = statusTone(status);
  const className = `badge badge-${tone}`;
  if (badge.className !== className || badge.dataset.status !== status) {
    badge.className = className;
    badge.dataset.status = status;
    badge.replaceChildren(
      tone === 'busy' ? h('span', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }) : h('span', { class: 'badge-dot', attrs: { 'aria-hidden': 'true' } }),
      h('span', { class: 'badge-text', text: statusLabel(status) }),
    );
  }
}

/** The indeterminate bar plus a sentence about what is happening. */
export function progressLine() {
  return h('div', { class: 'progress-line', hidden: true },
    h('div', { class: 'progress-bar', attrs: { 'aria-hidden': 'true' } }, h('span')),
    h('p', { class: 'progress-text', attrs: { 'aria-live': 'polite' } }));
}

/** Shows the step the server names (`env.progress`), else a sentence for the status. */
export function updateProgressLine(line, env) {
  const busy = isTransitional(env.status);
  line.hidden = !busy;
  if (busy) {
    const text = progressText(env.progress) ?? PROGRESS_TEXT[env.status] ?? statusLabel(env.status);
    setText(line.querySelector('.progress-text'), text);
  }
}

const USAGE_ROWS = [
  ['cpu', 'CPU'],
  ['memory', 'Memory'],
  ['disk', 'Disk'],
];

/** CPU, memory and disk with a meter each, and a warning when the disk is nearly full. */
export function usageBlock(idPrefix) {
  const rows = USAGE_ROWS.map(([key, label]) => {
    const id = `${idPrefix}-${key}`;
    return h('div', { class: 'usage-row', dataset: { usage: key } },
      h('dt', { id, text: label }),
      h('dd', {},
        h('span', { class: 'usage-value' }),
        h('meter', { min: 0, max: 1, low: 0.7, high: 0.9, optimum: 0, attrs: { 'aria-labelledby': id } })));
  });
  return h('div', { class: 'usage-block', hidden: true },
    h('dl', { class: 'usage' }, ...rows),
    h('p', { class: 'usage-warning', hidden: true, attrs: { role: 'status' } },
      icon('alert'), h('span', { class: 'usage-warning-text' })),
    h('p', { class: 'usage-snapshot', hidden: true },
      h('span', { text: 'Last snapshot ' }), timeEl(null, 'not yet'), h('span', { class: 'usage-snapshot-size' })),
    h('p', { class: 'usage-at' }, h('span', { text: 'Measured ' }), timeEl(null)));
}

/** Shows `env.usage` (hidden while there is none: not running, or not reported yet). */
export function updateUsage(block, env) {
  const figures = env.status === 'running' ? usageFigures(env.usage) : null;
  block.hidden = !figures;
  if (!figures) return;
  for (const [key] of USAGE_ROWS) {
    const row = block.querySelector(`[data-usage="${key}"]`);
    setText(row.querySelector('.usage-value'), figures[key]);
    const meter = row.querySelector('meter');
    const value = String(figures[`${key}Share`]);
    if (meter.getAttribute('value') !== value) meter.setAttribute('value', value);
  }
  // Snapshot mode: the last snapshot and its size against the storage, and
  // the agent's warning before a snapshot would no longer fit.
  const snap = snapshotFigures(env);
  const snapLine = block.querySelector('.usage-snapshot');
  snapLine.hidden = !snap;
  if (snap) {
    updateTime(snapLine.querySelector('time'), snap.lastAt, 'not yet');
    setText(snapLine.querySelector('.usage-snapshot-size'), snap.size ? ` · ${snap.size}` : '');
  }
  const warnings = [];
  if (figures.diskWarning) warnings.push(`The workspace disk is ${figures.diskPercent}% full: free some space or files may fail to save.`);
  if (snap?.warning) warnings.push(`Snapshots: ${snap.warning}.`);
  const warning = block.querySelector('.usage-warning');
  warning.hidden = warnings.length === 0;
  setText(warning.querySelector('.usage-warning-text'), warnings.join(' '));
  updateTime(block.querySelector('.usage-at time'), env.usage.at);
}

/** A small coloured tile standing for the template (decorative). */
export function templateTile(baseImage) {
  const known = baseImage in TILE_TEXT;
  return h('span', {
    class: `tile tile-${known ? baseImage : 'other'}`,
    attrs: { 'aria-hidden': 'true' },
    text: TILE_TEXT[baseImage] ?? (baseImage ?? '?').slice(0, 2),
  });
}

/** A <time> showing a relative time with the exact one in its title. */
export function timeEl(value, emptyText = '—') {
  const el = h('time');
  updateTime(el, value, emptyText);
  return el;
}

export function updateTime(el, value, emptyText = '—', now = Date.now()) {
  if (!value) {
    el.removeAttribute('datetime');
    el.removeAttribute('title');
    setText(el, emptyText);
    return;
  }
  if (el.getAttribute('datetime') !== value) {
    el.setAttribute('datetime', value);
    el.title = exactTime(value);
  }
  el.dataset.empty = emptyText;
  setText(el, relativeTime(value, now));
}

/** Refreshes every relative <time> under `root`. */
export function refreshTimes(root, now = Date.now()) {
  for (const el of root.querySelectorAll('time[datetime]')) setText(el, relativeTime(el.getAttribute('datetime'), now));
}

const ACTION_ORDER = ['open', 'start', 'stop', 'delete'];

/** The action bar, built from `env.actions`. */
export function actionBar(ctx) {
  const bar = h('div', { class: 'actions' });
  bar.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button || button.disabled || !bar.envSnapshot) return;
    ctx.onAction(bar.envSnapshot, button.dataset.action, button);
  });
  return bar;
}

/**
 * Brings the bar in line with `env.actions`, keeping existing controls (and
 * so keyboard focus) in place. While an action is in flight every button of
 * that environment is disabled and the busy one shows a spinner.
 */
export function updateActionBar(bar, env, ctx) {
  bar.envSnapshot = env;
  const allowed = new Set(env.actions ?? []);
  const pending = ctx.pending.get(env.id);
  const existing = new Map([...bar.children].map((el) => [el.dataset.action, el]));
  let previous = null;
  for (const action of ACTION_ORDER) {
    let el = existing.get(action);
    if (!allowed.has(action)) {
      el?.remove();
      continue;
    }
    if (!el) el = makeControl(action, env);
    if (previous ? previous.nextElementSibling !== el : bar.firstElementChild !== el) {
      if (previous) previous.after(el);
      else bar.prepend(el);
    }
    if (action === 'open') {
      el.href = ideHref(env.id);
    } else {
      el.disabled = Boolean(pending);
      const busy = pending === action;
      el.classList.toggle('is-busy', busy);
      if (busy) el.setAttribute('aria-busy', 'true');
      else el.removeAttribute('aria-busy');
    }
    previous = el;
  }
}

function makeControl(action, env) {
  if (action === 'open') {
    return h('a', {
      class: 'btn btn-primary',
      href: ideHref(env.id),
      target: '_blank',
      rel: 'noopener',
      title: 'Opens in a new tab',
      dataset: { action: 'open' },
    }, h('span', { text: 'Open IDE' }), icon('external'));
  }
  const spec = {
    start: { label: 'Start', icon: 'play', class: 'btn' },
    stop: { label: 'Stop', icon: 'stop', class: 'btn' },
    delete: { label: 'Delete', icon: 'trash', class: 'btn btn-danger' },
  }[action];
  return h('button', { type: 'button', class: spec.class, dataset: { action } },
    icon(spec.icon),
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: spec.label }));
}
