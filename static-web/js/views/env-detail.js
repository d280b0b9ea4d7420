// The detail page for one environment: status, reason, resources, times,
// the same actions as the card, the editable name and idle timeout, and its
// history. Opened as `#/environments/<id>?notice=not-running` (where the IDE
// address sends a person whose environment is not running) it says so,
// offers Start, and opens the IDE when it is running.

import { h, setText, keepFocus } from '../dom.js';
import { icon } from '../icons.js';
import { api, describeError, ideHref } from '../api.js';
import { hashQuery } from '../router.js';
import { isTransitional } from '../transitions.js';
import { templateName } from '../format.js';
import { homeModeText } from '../usage.js';
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
    home: h('dd', {}, h('span', { class: 'home-mode' }), h('span', { class: 'fact-note home-limit' })),
    idle: h('dd'),
    lastActivity: h('dd', {}, timeEl(null)),
    created: h('dd', {}, timeEl(null)),
    updated: h('dd', {}, timeEl(null)),
    id: h('dd', { class: 'mono' }),
  };
  const row = (label, dd) => h('div', { class: 'fact' }, h('dt', { text: label }), dd);

  const nameInput = h('input', {
    type: 'text', name: 'name', required: true, maxLength: 50, autocomplete: 'off', spellcheck: false,
  });
  const nameField = field('Name', nameInput, { id: 'detail-name' });
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
    formAlert(), nameField.wrap, h('div', { class: 'inline-field' }, idleField.wrap, save));
  let idleDirty = false;
  let nameDirty = false;
  idleInput.addEventListener('input', () => { idleDirty = true; setFieldError(idleInput, ''); });
  nameInput.addEventListener('input', () => { nameDirty = true; setFieldError(nameInput, ''); });
  settings.addEventListener('submit', (event) => {
    event.preventDefault();
    saveSettings();
  });

  // `?notice=not-running`: the IDE address sent the person here.
  const wantsIde = hashQuery(location.hash).get('notice') === 'not-running';
  const noticeText = h('p', { class: 'callout-body' });
  const noticeStart = h('button', { type: 'button', class: 'btn btn-primary', dataset: { action: 'start' } },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }), h('span', { text: 'Start' }));
  const noticeOpen = h('a', { class: 'btn btn-primary', text: 'Open IDE', hidden: true });
  noticeStart.addEventListener('click', () => { if (current) ctx.onAction(current, 'start', noticeStart); });
  const notice = h('div', { class: 'callout callout-info not-running', hidden: true, attrs: { role: 'status' } },
    icon('info'), h('div', {}, h('p', { class: 'callout-title', text: 'Your IDE isn’t running' }), noticeText,
      h('div', { class: 'callout-actions' }, noticeStart, noticeOpen)));
  let seenNotRunning = false;
  let openedIde = false;

  const notFound = h('div', { class: 'empty', hidden: true },
    h('h2', { text: 'Environment not found' }),
    h('p', { text: 'It may have been deleted, or the link is wrong.' }),
    h('a', { class: 'btn', href: '#/', text: 'Back to environments' }));

  const body = h('div', { class: 'detail' },
    h('div', { class: 'detail-head' },
      tileSlot,
      h('div', { class: 'detail-title' }, h('div', { class: 'detail-title-row' }, title, badge), subtitle)),
    notice,
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
          row('Home', facts.home),
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

  /** Saves what changed (name, idle timeout); nothing changed, nothing sent and no toast. */
  async function saveSettings() {
    clearErrors(settings);
    if (!current) return;
    const { min, max } = ctx.limits.idleTimeoutMinutes;
    const value = Number(idleInput.value);
    const name = nameInput.value.trim();
    if (!name) {
      setFieldError(nameInput, 'Give it a name');
      nameInput.focus();
      return;
    }
    const clash = ctx.environments.find((e) => e.id !== id && e.name.toLowerCase() === name.toLowerCase());
    if (clash) {
      setFieldError(nameInput, `You already have an environment called ${clash.name}: pick another name`);
      nameInput.focus();
      return;
    }
    if (!idleInput.value.trim() || !Number.isInteger(value) || value < min || value > max) {
      setFieldError(idleInput, `must be a whole number between ${min} and ${max}`);
      idleInput.focus();
      return;
    }
    const changes = {};
    if (name !== current.name) changes.name = name;
    if (value !== current.idleTimeoutMinutes) changes.idleTimeoutMinutes = value;
    if (Object.keys(changes).length === 0) {
      nameDirty = false;
      idleDirty = false;
      setFormAlert(settings, 'Nothing to save: these are the current settings.', 'info');
      return;
    }
    const before = current;
    save.disabled = true;
    save.classList.add('is-busy');
    try {
      const updated = await api.update(id, changes);
      idleDirty = false;
      nameDirty = false;
      ctx.onUpdated(updated);
      const said = [];
      if ('name' in changes) said.push(`${before.name} is now called ${updated.name}`);
      if ('idleTimeoutMinutes' in changes) said.push(`idle timeout set to ${updated.idleTimeoutMinutes} min`);
      const message = said.join('; ');
      ctx.toast({ message: message.charAt(0).toUpperCase() + message.slice(1), tone: 'success', key: `settings-${id}` });
    } catch (error) {
      if (error.status === 401) return;
      if (Object.keys(error.errors).length) {
        showFieldErrors(settings, error.errors, { name: nameInput, idleTimeoutMinutes: idleInput });
      } else setFormAlert(settings, describeError(error));
    } finally {
      save.disabled = false;
      save.classList.remove('is-busy');
    }
  }

  /** The not-running notice: the state, Start, and the IDE once it runs. */
  function updateNotice(env) {
    notice.hidden = !wantsIde;
    if (!wantsIde) return;
    if (env.status !== 'running') seenNotRunning = true;
    const canStart = (env.actions ?? []).includes('start');
    noticeStart.hidden = !canStart;
    noticeStart.disabled = Boolean(ctx.pending.get(env.id));
    noticeStart.classList.toggle('is-busy', ctx.pending.get(env.id) === 'start');
    noticeOpen.hidden = env.status !== 'running';
    noticeOpen.href = ideHref(env.id);
    let text;
    if (env.status === 'running') text = `${env.name} is running.`;
    else if (isTransitional(env.status)) text = `${env.name} is ${env.status}. The IDE opens here when it’s ready.`;
    else if (env.status === 'error') text = `${env.name} failed. Start it again, and the IDE opens here when it’s ready.`;
    else text = `${env.name} is stopped. Start it, and the IDE opens here when it’s ready.`;
    setText(noticeText, text);
    // Seen not running on this page, now running: open the IDE (the ticket
    // flow behind its address signs this browser in).
    if (env.status === 'running' && seenNotRunning && !openedIde) {
      openedIde = true;
      location.assign(ideHref(env.id));
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
      updateNotice(env);
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
      const home = homeModeText(env, ctx.shareHome);
      setText(facts.home.querySelector('.home-mode'), home.label);
      setText(facts.home.querySelector('.home-limit'), home.limit);
      setText(facts.idle, `Stops after ${env.idleTimeoutMinutes} min without activity`);
      updateTime(facts.lastActivity.firstChild, env.lastActivityAt, 'Not used yet');
      updateTime(facts.created.firstChild, env.createdAt);
      updateTime(facts.updated.firstChild, env.updatedAt);
      setText(facts.id, env.id);
      if (!idleDirty && document.activeElement !== idleInput) idleInput.value = String(env.idleTimeoutMinutes);
      if (!nameDirty && document.activeElement !== nameInput) nameInput.value = env.name;
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
