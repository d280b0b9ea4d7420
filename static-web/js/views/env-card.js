// One environment as a card in the list; updated in place on every poll.

import { h, setText, keepFocus } from '../dom.js';
import { sizeLabel, templateName } from '../format.js';
import { hrefFor } from '../router.js';
import { idleWarning } from '../idle.js';
import {
  actionBar, progressLine, statusBadge, templateTile, timeEl, usageBlock,
  updateActionBar, updateProgressLine, updateStatusBadge, updateTime, updateUsage,
} from './env-parts.js';

/** Builds a card for `env` (call `updateCard` for later snapshots). */
export function createCard(env, ctx) {
  const titleId = `env-title-${env.id}`;
  const link = h('a', { class: 'card-link', href: hrefFor({ name: 'detail', id: env.id }) });
  const card = h('article', {
    class: 'card env-card',
    dataset: { envId: env.id },
    attrs: { 'aria-labelledby': titleId },
  },
  h('div', { class: 'card-head' },
    h('span', { class: 'tile-slot' }),
    h('div', { class: 'card-title' },
      h('h2', { id: titleId }, link),
      h('p', { class: 'card-subtitle' })),
    statusBadge()),
  progressLine(),
  h('p', { class: 'env-reason', hidden: true }),
  h('p', { class: 'env-reason env-clone-error', hidden: true }),
  h('p', { class: 'env-stale', hidden: true, text: 'May be out of date: Dev8 isn’t answering' }),
  h('p', { class: 'env-idle-warning', hidden: true, attrs: { role: 'status' } }),
  h('dl', { class: 'env-facts' },
    h('div', {}, h('dt', { text: 'Size' }), h('dd', { class: 'fact-size' })),
    h('div', {}, h('dt', { text: 'Created' }), h('dd', {}, timeEl(null))),
    h('div', {}, h('dt', { text: 'Last used' }), h('dd', {}, timeEl(null)))),
  usageBlock(`env-usage-${env.id}`),
  actionBar(ctx));
  updateCard(card, env, ctx);
  return card;
}

/** Brings a card in line with a new snapshot of its environment. */
export function updateCard(card, env, ctx) {
  keepFocus(card, () => {
    card.dataset.status = env.status;
    card.setAttribute('aria-busy', String(ctx.pending.has(env.id)));
    const slot = card.querySelector('.tile-slot');
    if (slot.dataset.image !== env.baseImage) {
      slot.dataset.image = env.baseImage;
      slot.replaceChildren(templateTile(env.baseImage));
    }
    setText(card.querySelector('.card-link'), env.name);
    setText(card.querySelector('.card-subtitle'), templateName(ctx.templates, env.baseImage));
    updateStatusBadge(card.querySelector('.badge'), env.status);
    updateProgressLine(card.querySelector('.progress-line'), env);
    updateUsage(card.querySelector('.usage-block'), env);
    const reason = card.querySelector('.env-reason:not(.env-clone-error)');
    const cloneError = card.querySelector('.env-clone-error');
    cloneError.hidden = !env.cloneError;
    setText(cloneError, env.cloneError ? `The repository could not be cloned: ${env.cloneError}` : '');
    const why = stopReason(env);
    reason.hidden = !why;
    reason.classList.toggle('env-reason-info', env.status !== 'error');
    setText(reason, why ?? '');
    card.querySelector('.env-stale').hidden = !ctx.stale;
    card.classList.toggle('is-stale', Boolean(ctx.stale));
    const warning = card.querySelector('.env-idle-warning');
    const idle = idleWarning(env);
    warning.hidden = !idle;
    setText(warning, idle ?? '');
    setText(card.querySelector('.fact-size'), sizeLabel(env));
    const [created, used] = card.querySelectorAll('.env-facts time');
    updateTime(created, env.createdAt);
    updateTime(used, env.lastActivityAt, 'Not yet');
    updateActionBar(card.querySelector('.actions'), env, ctx);
  }, () => card.querySelector('.card-link'));
}

/** Why the environment is where it is, when that is worth a line: an error's reason, an idle stop. */
export function stopReason(env) {
  if (env.status === 'error') return env.statusReason || null;
  if (env.status === 'stopped' && env.stopCause === 'idle') {
    return `Stopped after ${env.idleTimeoutMinutes} min without use. Your files are kept.`;
  }
  return null;
}
