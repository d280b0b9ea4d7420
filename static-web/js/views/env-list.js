// The environments page: heading, "New environment", the card grid, the
// empty state and the loading skeleton.

import { h, setText, keepFocus } from '../dom.js';
import { icon } from '../icons.js';
import { createCard, updateCard } from './env-card.js';

/** Creates the list view; `update(state)` re-renders it from app state. */
export function createListView(ctx) {
  const count = h('p', { class: 'page-subtitle' });
  const notice = h('p', { class: 'notice', hidden: true });
  const grid = h('div', { class: 'grid', attrs: { role: 'list' } });
  const empty = emptyState(ctx);
  const skeleton = h('div', { class: 'grid', attrs: { 'aria-hidden': 'true' } },
    [1, 2, 3].map(() => h('div', { class: 'card skeleton' }, h('span'), h('span'), h('span'))));
  const loading = h('p', { class: 'visually-hidden', text: 'Loading environments…' });
  const el = h('section', { class: 'page', attrs: { 'aria-labelledby': 'page-title' } },
    h('div', { class: 'page-head' },
      h('div', {},
        h('h1', { id: 'page-title', tabIndex: -1, text: 'Environments' }),
        count),
      h('button', { type: 'button', class: 'btn btn-primary', on: { click: () => ctx.onNew() } },
        icon('plus'), h('span', { text: 'New environment' }))),
    notice, loading, skeleton, empty, grid);

  const cards = new Map();

  function update(state) {
    const envs = state.environments;
    const loaded = Array.isArray(envs);
    skeleton.hidden = loaded || Boolean(state.loadError);
    loading.hidden = loaded;
    empty.hidden = !loaded || envs.length > 0;
    grid.hidden = !loaded || envs.length === 0;
    // While Dev8 is unreachable the page-wide banner says so.
    notice.hidden = !state.pollError || state.offline;
    setText(notice, state.pollError ?? '');
    if (!loaded) { setText(count, ''); return; }
    const running = envs.filter((e) => e.status === 'running').length;
    setText(count, envs.length === 0 ? '' : `${envs.length} total · ${running} running`);

    keepFocus(grid, () => {
      const seen = new Set();
      let previous = null;
      for (const env of envs) {
        seen.add(env.id);
        let item = cards.get(env.id);
        if (item) updateCard(item.firstElementChild, env, ctx);
        else {
          item = h('div', { class: 'grid-item', attrs: { role: 'listitem' } }, createCard(env, ctx));
          cards.set(env.id, item);
        }
        const inPlace = previous ? previous.nextElementSibling === item : grid.firstElementChild === item;
        if (!inPlace) {
          if (previous) previous.after(item);
          else grid.prepend(item);
        }
        previous = item;
      }
      for (const [id, item] of cards) {
        if (!seen.has(id)) { item.remove(); cards.delete(id); }
      }
    }, () => el.querySelector('h1'));
  }

  return { el, update, focusTarget: () => el.querySelector('h1') };
}

function emptyState(ctx) {
  return h('div', { class: 'empty', hidden: true },
    illustration(),
    h('h2', { text: 'Start coding in the cloud' }),
    h('p', { text: 'You don’t have any environments yet. Each one is a cloud machine with VS Code in your browser — pick a template and you’re coding in about a minute.' }),
    h('button', { type: 'button', class: 'btn btn-primary btn-lg', on: { click: () => ctx.onNew() } },
      icon('plus'), h('span', { text: 'Create your first environment' })));
}

function illustration() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 160 110');
  svg.setAttribute('class', 'empty-art');
  svg.setAttribute('aria-hidden', 'true');
  const shapes = [
    ['rect', { x: 14, y: 12, width: 132, height: 86, rx: 10, class: 'art-window' }],
    ['rect', { x: 14, y: 12, width: 132, height: 18, rx: 10, class: 'art-bar' }],
    ['rect', { x: 14, y: 22, width: 132, height: 8, class: 'art-bar' }],
    ['circle', { cx: 26, cy: 21, r: 3, class: 'art-dot art-dot-1' }],
    ['circle', { cx: 36, cy: 21, r: 3, class: 'art-dot art-dot-2' }],
    ['circle', { cx: 46, cy: 21, r: 3, class: 'art-dot art-dot-3' }],
    ['rect', { x: 28, y: 42, width: 44, height: 6, rx: 3, class: 'art-code art-code-a' }],
    ['rect', { x: 38, y: 54, width: 64, height: 6, rx: 3, class: 'art-code art-code-b' }],
    ['rect', { x: 38, y: 66, width: 36, height: 6, rx: 3, class: 'art-code art-code-c' }],
    ['rect', { x: 28, y: 78, width: 24, height: 6, rx: 3, class: 'art-code art-code-a' }],
    ['rect', { x: 78, y: 66, width: 3, height: 10, class: 'art-caret' }],
  ];
  for (const [tag, attrs] of shapes) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  }
  return svg;
}
