// A list of audit records as sentences, newest first, with "Show older"
// paging through the API's cursor: the environment's history (detail page)
// and the account's activity (account page).

import { h, setText } from '../dom.js';
import { api, describeError } from '../api.js';
import { describeRecord } from '../history.js';
import { timeEl } from './env-parts.js';

/**
 * `environmentId` narrows the log to one environment; `describe(record)`
 * gives `describeRecord`'s options for a record; `label` names the list for
 * screen readers; `empty` is shown when there is nothing yet.
 */
export function createAuditLog({ environmentId = null, describe = () => ({}), label, empty, pageSize = 20 }) {
  const list = h('ol', { class: 'log', attrs: { 'aria-label': label } });
  const status = h('p', { class: 'muted log-status', attrs: { role: 'status' } });
  const more = h('button', { type: 'button', class: 'btn btn-sm', hidden: true },
    h('span', { class: 'spinner spinner-inline', attrs: { 'aria-hidden': 'true' } }),
    h('span', { text: 'Show older' }));
  const el = h('div', { class: 'log-wrap' }, list, status, more);

  let next = null;
  let loading = false;
  let generation = 0;

  async function load(before) {
    const mine = generation;
    loading = true;
    // Busy, not disabled: a disabled button would drop keyboard focus.
    more.classList.toggle('is-busy', Boolean(before));
    more.setAttribute('aria-busy', String(Boolean(before)));
    if (!before) setText(status, 'Loading…');
    try {
      const page = await api.audit({ environmentId, before, limit: pageSize });
      if (mine !== generation) return; // a reload started meanwhile
      const items = page.records.map((r) => item(r, describe(r)));
      next = page.next;
      const onMore = document.activeElement === more;
      if (!before) list.replaceChildren();
      list.append(...items);
      more.hidden = !next;
      // The last page: keep the keyboard where the new records start.
      if (onMore && more.hidden) items[0]?.focus();
      setText(status, list.children.length ? '' : empty);
    } catch (error) {
      if (mine !== generation || error.status === 401) return;
      setText(status, `Couldn’t load this list: ${describeError(error)}`);
    } finally {
      if (mine === generation) {
        loading = false;
        more.classList.remove('is-busy');
        more.removeAttribute('aria-busy');
      }
    }
  }

  more.addEventListener('click', () => { if (next && !loading) load(next); });

  return {
    el,
    /** Loads the newest page again (older pages are dropped). */
    reload() {
      generation += 1;
      next = null;
      return load(null);
    },
  };
}

function item(record, options) {
  const { text, tone, cause, advice } = describeRecord(record, options);
  return h('li', { class: `log-item log-${tone}`, tabIndex: -1 },
    h('p', { class: 'log-text' },
      tone === 'error' ? h('span', { class: 'visually-hidden', text: 'Problem: ' }) : null,
      text),
    cause ? h('p', { class: 'log-cause', text: cause }) : null,
    advice ? h('p', { class: 'log-advice' }, h('strong', { text: 'What to do: ' }), advice) : null,
    h('p', { class: 'log-meta' },
      timeEl(record.at),
      record.clientAddress ? h('span', { text: ` · from ${record.clientAddress}` }) : null));
}
