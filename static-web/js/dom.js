// Small DOM helpers: element construction without innerHTML, and focus keeping.

/**
 * Creates an element. `props` keys: `class`, `text`, `dataset`, `on` (event
 * map), `attrs` (attribute map); any other key is set as a property
 * (`hidden`, `disabled`, `href`, `type`...). Children may be strings, nodes,
 * arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === 'attrs') for (const [name, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(name, v === true ? '' : String(v)); }
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Sets text only when it changed (keeps screen readers and selections calm). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Runs `mutate()`; if focus was inside `scope` and its element was removed or
 * disabled by the change, moves focus to the same element if it is still
 * usable, else to `fallback()`. (Chrome drops focus from a disabled control
 * only at the next rendering step, so "disabled" counts as lost here.)
 */
export function keepFocus(scope, mutate, fallback) {
  const active = document.activeElement;
  const hadFocus = active && active !== document.body && scope.contains(active);
  mutate();
  if (!hadFocus) return;
  const now = document.activeElement;
  const lost = !now || now === document.body || (now === active && (active.disabled || !active.isConnected));
  if (!lost) return;
  if (active.isConnected && !active.disabled) active.focus({ preventScroll: true });
  else fallback?.()?.focus({ preventScroll: true });
}

let uid = 0;
/** A unique id for label/description wiring. */
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}
