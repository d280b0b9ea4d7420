import { test } from 'node:test';
import assert from 'node:assert/strict';
import { idleWarning } from '../js/idle.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const at = (minutes) => new Date(NOW + minutes * 60_000).toISOString();
const env = (over) => ({ status: 'running', idleStopAt: at(4), idleWarningAt: at(-1), ...over });

test('the warning shows from its time until the stop, for a running environment only', () => {
  assert.match(idleWarning(env({}), NOW), /in about 4 min/);
  assert.equal(idleWarning(env({ idleWarningAt: at(1) }), NOW), null, 'not yet');
  assert.equal(idleWarning(env({ idleStopAt: at(0) }), NOW), null, 'already due');
  assert.equal(idleWarning(env({ status: 'stopping' }), NOW), null);
  assert.equal(idleWarning(env({ idleStopAt: null, idleWarningAt: null }), NOW), null);
  assert.match(idleWarning(env({ idleStopAt: at(0.2) }), NOW), /in about 1 min/);
});
