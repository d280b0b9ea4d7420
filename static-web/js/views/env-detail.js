// The detail page for one environment: status, reason, resources, times,
// the same actions as the card, the editable idle timeout, and its history.

import { h, setText, keepFocus } from '../dom.js';
import { icon } from '../icons.js';
import { api, describeError } from '../api.js';
import { templateName } from '../format.js';
import { field, formAlert, clearErrors, setFieldError, showFieldErrors, setFormAlert } from '../forms.js';
import {
  actionBar, progressLine, statusBadge, templateTile, timeEl, usageBlock,
  updateActionBar, updateProgressLine, updateStatusBadge, updateTime, updateUsage,
} from './env-parts.js';
import { createAuditLog } from './audit-log.js';

/** Creates the detail view for environment `id`. */
export function createDetailView(id, ctx) {
  const title = h('h1', { id: 'page-title', tabIndex: -1 });
  const badge = statusBadge();
  const tileSlot = h('span', { class: 'tile-slot tile-slot-lg' });
  const subtitle = h('p', { class: 'page-subtitle' });
  const bar = actionBar(ctx);
  const progress = progressLine();
  const usage = usageBlock('detail-usage');
  const usagePanel = h('section', { class: 'panel usage-panel', hidden: true, attrs: { 'aria-labelledby': 'usage-title' } },
    h('h2', { id: 'usage-title', text: 'Usage' }), usage);
  const reason = h('div', { class: 'callout callout-error', hidden: true, attrs: { role: 'note' } },
    icon('alert'), h('div', {}, h('p', { class: 'callout-title', text: 'This environment failed' }), h('p', { class: 'callout-body' })));

  const facts = {
    status: h('dd'),
    template: h('dd'),
    cpu: h('dd'),
    memory: h('dd'),
    storage: h('dd'),
    idle: h('dd'),
    lastActivity: h('dd', {}, timeEl(null)),
    created: h('dd', {}, timeEl(null)),
    updated: h('dd', {}, timeEl(null)),
    id: h('dd', { class: 'mono' }),
  };
  const row = (label, dd) => h('div', { class: 'fact' }, h('dt', { text: label }), dd);

  const idleInput = h('input', {
    type: 'number', name: 'idleTimeoutMinutes', inputMode: 'numeric', required: true,
    min: String(ctx.limits.idleTimeoutMinutes.min), max: String(ctx.limits.idleTimeoutMinutes.max), step: '1',
  });
  const idleField = field('Idle timeout (minutes)', idleInput, {
    id: 'detail-idle',
    hint: `Stops automatically after this many minutes without activity (${ctx.limits.idleTimeoutMinutes.min}–${ctx.limits.idleTimeoutMinutes.max}).`,
  });
  const save = h('button', { type: 'submit', class: 'btn' }, h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }), h('span', { text: 'Save' }));
  const settings = h('form', { class: 'settings-form', noValidate: true },
    formAlert(), h('div', { class: 'inline-field' }, idleField.wrap, save));
  let idleDirty = false;
  idleInput.addEventListener('input', () => { idleDirty = true; setFieldError(idleInput, ''); });
  settings.addEventListener('submit', (event) => {
    event.preventDefault();
    saveIdle();
  });

  const notFound = h('div', { class: 'empty', hidden: true },
    h('h2', { text: 'Environment not found' }),
    h('p', { text: 'It may have been deleted, or the link is wrong.' }),
    h('a', { class: 'btn', href: '#/', text: 'Back to environments' }));

  const body = h('div', { class: 'detail' },
    h('div', { class: 'detail-head' },
      tileSlot,
      h('div', { class: 'detail-title' }, h('div', { class: 'detail-title-row' }, title, badge), subtitle)),
    progress,
    reason,
    bar,
    usagePanel,
    h('div', { class: 'detail-grid' },
      h('section', { class: 'panel', attrs: { 'aria-labelledby': 'overview-title' } },
        h('h2', { id: 'overview-title', text: 'Overview' }),
        h('dl', { class: 'facts' },
          row('Status', facts.status),
          row('Template', facts.template),
          row('CPU', facts.cpu),
          row('Memory', facts.memory),
          row('Disk', facts.storage),
          row('Idle timeout', facts.idle),
          row('Last activity', facts.lastActivity),
          row('Created', facts.created),
          row('Updated', facts.updated),
          row('ID', facts.id))),
      h('section', { class: 'panel', attrs: { 'aria-labelledby': 'settings-title' } },
        h('h2', { id: 'settings-title', text: 'Settings' }),
        settings)));

  const history = createAuditLog({ environmentId: id, label: 'History, newest first', empty: 'Nothing has happened yet.', pageSize: 10 });
  body.append(h('section', { class: 'panel history', attrs: { 'aria-labelledby': 'history-title' } },
    h('h2', { id: 'history-title', text: 'History' }),
    history.el));
  let historySeen = null;

  const loading = h('p', { class: 'muted', text: 'Loading…' });
  const el = h('section', { class: 'page' },
    h('a', { class: 'back-link', href: '#/' }, icon('back'), h('span', { text: 'All environments' })),
    loading, notFound, body);

  let current = null;

  async function saveIdle() {
    clearErrors(settings);
    const { min, max } = ctx.limits.idleTimeoutMinutes;
    const value = Number(idleInput.value);
    if (!idleInput.value.trim() || !Number.isInteger(value) || value < min || value > max) {
      setFieldError(idleInput, `must be a whole number between ${min} and ${max}`);
      idleInput.focus();
      return;
    }
    save.disabled = true;
    save.classList.add('is-busy');
    try {
      const updated = await api.update(id, { idleTimeoutMinutes: value });
      idleDirty = false;
      ctx.onUpdated(updated);
      ctx.toast({ message: `Idle timeout for ${updated.name} set to ${updated.idleTimeoutMinutes} min`, tone: 'success' });
    } catch (error) {
      if (error.status === 401) return;
      if (Object.keys(error.errors).length) showFieldErrors(settings, error.errors, { idleTimeoutMinutes: idleInput });
      else setFormAlert(settings, describeError(error));
    } finally {
      save.disabled = false;
      save.classList.remove('is-busy');
    }
  }

  function update(state) {
    const envs = state.environments;
    const env = envs?.find((e) => e.id === id) ?? null;
    loading.hidden = Boolean(envs) || Boolean(state.loadError);
    notFound.hidden = !envs || Boolean(env);
    body.hidden = !env;
    if (!env) return;
    current = env;
    // Read the history when the page opens and whenever the status moves.
    const historyKey = `${env.status}/${env.stopCause}`;
    if (historyKey !== historySeen) {
      historySeen = historyKey;
      history.reload();
    }
    keepFocus(body, () => {
      document.title = `${env.name} · Dev8`;
      setText(title, env.name);
      if (tileSlot.dataset.image !== env.baseImage) {
        tileSlot.dataset.image = env.baseImage;
        tileSlot.replaceChildren(templateTile(env.baseImage));
      }
      const template = templateName(ctx.templates, env.baseImage);
      setText(subtitle, template);
      updateStatusBadge(badge, env.status);
      updateProgressLine(progress, env);
      updateUsage(usage, env);
      usagePanel.hidden = usage.hidden;
      reason.hidden = env.status !== 'error';
      setText(reason.querySelector('.callout-body'), env.statusReason || 'No reason was given. Try starting it again, or delete it.');
      updateActionBar(bar, env, ctx);
      setText(facts.status, statusText(env));
      setText(facts.template, template);
      setText(facts.cpu, `${env.cpuCores} ${env.cpuCores === 1 ? 'core' : 'cores'}`);
      setText(facts.memory, `${env.memoryGB} GB`);
      setText(facts.storage, `${env.storageGB} GB`);
      setText(facts.idle, `Stops after ${env.idleTimeoutMinutes} min without activity`);
      updateTime(facts.lastActivity.firstChild, env.lastActivityAt, 'Not used yet');
      updateTime(facts.created.firstChild, env.createdAt);
      updateTime(facts.updated.firstChild, env.updatedAt);
      setText(facts.id, env.id);
      if (!idleDirty && document.activeElement !== idleInput) idleInput.value = String(env.idleTimeoutMinutes);
    }, () => title);
  }

  return { el, update, focusTarget: () => (current ? title : el.querySelector('.back-link')) };
}

function statusText(env) {
  const label = { creating: 'Creating', starting: 'Starting', running: 'Running', stopping: 'Stopping', stopped: 'Stopped', error: 'Error', deleting: 'Deleting' }[env.status] ?? env.status;
  if (env.status === 'stopped' && env.stopCause === 'idle') return `${label} (for inactivity)`;
  if (env.status === 'stopped' && env.stopCause === 'user') return `${label} (by you)`;
  return label;
}
