import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffTransitions, isTransitional, anyTransitional } from '../js/transitions.js';
import { env } from './helpers.mjs';

const messages = (toasts) => toasts.map((t) => t.message);

test('no toast on first load', () => {
  const list = [env('a', 'running'), env('b', 'error', { statusReason: 'boom' }), env('c', 'stopped', { stopCause: 'idle' })];
  assert.deepEqual(diffTransitions(null, list), []);
  assert.deepEqual(diffTransitions(undefined, list), []);
});

test('to running: "<name> is ready"', () => {
  const toasts = diffTransitions([env('a', 'starting')], [env('a', 'running')]);
  assert.deepEqual(messages(toasts), ['env-a is ready']);
  assert.equal(toasts[0].kind, 'ready');
  assert.equal(toasts[0].tone, 'success');
  assert.equal(toasts[0].envId, 'a');
});

test('creating straight to running is ready too', () => {
  assert.deepEqual(messages(diffTransitions([env('a', 'creating')], [env('a', 'running')])), ['env-a is ready']);
});

test('to stopped by the user: "<name> stopped"', () => {
  const toasts = diffTransitions([env('a', 'stopping')], [env('a', 'stopped', { stopCause: 'user' })]);
  assert.deepEqual(messages(toasts), ['env-a stopped']);
  assert.equal(toasts[0].kind, 'stopped');
});

test('to stopped for inactivity: "<name> stopped for inactivity"', () => {
  const toasts = diffTransitions([env('a', 'running')], [env('a', 'stopped', { stopCause: 'idle' })]);
  assert.deepEqual(messages(toasts), ['env-a stopped for inactivity']);
  assert.equal(toasts[0].kind, 'idle');
});

test('to error: "<name> failed: <statusReason>"', () => {
  const toasts = diffTransitions([env('a', 'creating')], [env('a', 'error', { statusReason: 'image pull failed' })]);
  assert.deepEqual(messages(toasts), ['env-a failed: image pull failed']);
  assert.equal(toasts[0].tone, 'error');
});

test('to error without a reason still toasts', () => {
  assert.deepEqual(messages(diffTransitions([env('a', 'starting')], [env('a', 'error')])), ['env-a failed']);
});

test('no toast when nothing changed or the change is to a transitional status', () => {
  const before = [env('a', 'running'), env('b', 'stopped')];
  assert.deepEqual(diffTransitions(before, before), []);
  assert.deepEqual(diffTransitions(before, [env('a', 'stopping'), env('b', 'starting')]), []);
});

test('new environments do not toast', () => {
  assert.deepEqual(diffTransitions([env('a', 'running')], [env('a', 'running'), env('b', 'running')]), []);
});

test('a deleting environment that disappears toasts as deleted; others vanish quietly', () => {
  const toasts = diffTransitions([env('a', 'deleting'), env('b', 'running')], []);
  assert.deepEqual(messages(toasts), ['env-a deleted']);
});

test('several transitions at once keep list order', () => {
  const before = [env('a', 'starting'), env('b', 'stopping'), env('c', 'creating')];
  const after = [env('a', 'running'), env('b', 'stopped', { stopCause: 'user' }), env('c', 'error', { statusReason: 'quota' })];
  assert.deepEqual(messages(diffTransitions(before, after)), ['env-a is ready', 'env-b stopped', 'env-c failed: quota']);
});

test('transitional statuses', () => {
  for (const s of ['creating', 'starting', 'stopping', 'deleting']) assert.equal(isTransitional(s), true, s);
  for (const s of ['running', 'stopped', 'error']) assert.equal(isTransitional(s), false, s);
  assert.equal(anyTransitional([env('a', 'running'), env('b', 'deleting')]), true);
  assert.equal(anyTransitional([]), false);
});
