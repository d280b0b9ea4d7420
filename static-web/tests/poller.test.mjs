import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPoller } from '../js/poller.js';
import { manualClock, scriptedFetch, settle, env, httpError } from './helpers.mjs';

function setup(script, options = {}) {
  const clock = manualClock(1_000_000);
  const fetchList = scriptedFetch(script);
  const updates = [];
  const errors = [];
  const poller = createPoller({
    fetchList,
    clock,
    intervalMs: 2500,
    maxBackoffMs: 30000,
    onUpdate: (list) => updates.push(list),
    onError: (error, info) => errors.push({ error, ...info }),
    ...options,
  });
  return { clock, fetchList, updates, errors, poller };
}

test('polls every interval while something is transitional', async () => {
  const { clock, fetchList, poller, updates } = setup([[env('a', 'starting')]]);
  await poller.refresh();
  assert.equal(fetchList.calls, 1);
  assert.deepEqual(clock.pending(), [2500]);
  await clock.advance(2500);
  assert.equal(fetchList.calls, 2);
  await clock.advance(2500);
  assert.equal(fetchList.calls, 3);
  assert.equal(updates.length, 3);
  assert.equal(poller.state.active, true);
});

test('stops polling once everything is stable', async () => {
  const { clock, fetchList, poller } = setup([
    [env('a', 'creating'), env('b', 'running')],
    [env('a', 'starting'), env('b', 'running')],
    [env('a', 'running'), env('b', 'running')],
  ]);
  await poller.refresh();
  await clock.advance(2500);
  await clock.advance(2500);
  assert.equal(fetchList.calls, 3);
  assert.equal(poller.state.active, false);
  assert.deepEqual(clock.pending(), []);
  await clock.advance(60_000);
  assert.equal(fetchList.calls, 3, 'no polls after everything is stable');
});

test('does not poll at all when the first answer is stable', async () => {
  const { clock, fetchList, poller } = setup([[env('a', 'stopped'), env('b', 'error')]]);
  await poller.refresh();
  await clock.advance(30_000);
  assert.equal(fetchList.calls, 1);
});

test('backs off exponentially on errors up to the cap, and resets on success', async () => {
  const boom = new Error('network down');
  const { clock, fetchList, poller, errors } = setup([
    [env('a', 'starting')],
    boom, boom, boom, boom, boom, boom,
    [env('a', 'starting')],
    [env('a', 'starting')],
  ]);
  await poller.refresh();
  const delays = [];
  let wait = 2500;
  for (let i = 0; i < 6; i++) {
    await clock.advance(wait);
    wait = clock.pending()[0];
    delays.push(wait);
  }
  assert.deepEqual(delays, [5000, 10000, 20000, 30000, 30000, 30000]);
  assert.deepEqual(errors.map((e) => e.delayMs), [5000, 10000, 20000, 30000, 30000, 30000]);
  assert.equal(poller.state.failures, 6);
  await clock.advance(wait); // success
  assert.equal(poller.state.failures, 0);
  assert.deepEqual(clock.pending(), [2500], 'back to the normal interval');
  assert.equal(fetchList.calls, 8);
});

test('keeps retrying a failed first load even though nothing is known to be transitional', async () => {
  const { clock, fetchList, poller } = setup([new Error('offline'), [env('a', 'running')]]);
  await poller.refresh();
  assert.deepEqual(clock.pending(), [5000]);
  await clock.advance(5000);
  assert.equal(fetchList.calls, 2);
  assert.deepEqual(clock.pending(), []);
});

test('a 401 stops polling and is reported as fatal', async () => {
  const { clock, fetchList, poller, errors } = setup([[env('a', 'starting')], httpError(401)]);
  await poller.refresh();
  await clock.advance(2500);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].fatal, true);
  assert.equal(poller.state.active, false);
  await clock.advance(60_000);
  assert.equal(fetchList.calls, 2);
});

test('pauses while hidden and resumes at once when visible again', async () => {
  const { clock, fetchList, poller } = setup([[env('a', 'starting')]]);
  await poller.refresh();
  poller.setHidden(true);
  assert.deepEqual(clock.pending(), []);
  await clock.advance(20_000);
  assert.equal(fetchList.calls, 1, 'no polls while hidden');
  poller.setHidden(false);
  await settle();
  assert.equal(fetchList.calls, 2, 'polls immediately on return');
  assert.deepEqual(clock.pending(), [2500]);
  await clock.advance(2500);
  assert.equal(fetchList.calls, 3);
});

test('an answer that arrives while hidden does not schedule until visible', async () => {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const clock = manualClock();
  let calls = 0;
  const poller = createPoller({
    clock,
    fetchList: async () => { calls += 1; if (calls === 1) await gate; return [env('a', 'stopping')]; },
  });
  const first = poller.refresh();
  poller.setHidden(true);
  release();
  await first;
  assert.deepEqual(clock.pending(), []);
  assert.equal(poller.state.active, true);
  poller.setHidden(false);
  await settle();
  assert.equal(calls, 2);
});

test('coming back after a long absence refreshes once even when stable', async () => {
  const { clock, fetchList, poller } = setup([[env('a', 'running')]], { refreshAfterHiddenMs: 60_000 });
  await poller.refresh();
  poller.setHidden(true);
  await clock.advance(10_000);
  poller.setHidden(false);
  await settle();
  assert.equal(fetchList.calls, 1, 'short absence: nothing to do');
  poller.setHidden(true);
  await clock.advance(120_000);
  poller.setHidden(false);
  await settle();
  assert.equal(fetchList.calls, 2, 'long absence: one refresh');
  assert.deepEqual(clock.pending(), []);
});

test('sync() starts polling for a transitional list and stops for a stable one', async () => {
  const { clock, fetchList, poller } = setup([[env('a', 'stopping')], [env('a', 'stopped')]]);
  poller.sync([env('a', 'stopping')]);
  assert.deepEqual(clock.pending(), [2500]);
  await clock.advance(2500);
  assert.equal(fetchList.calls, 1);
  poller.sync([env('a', 'stopped')]);
  assert.deepEqual(clock.pending(), []);
  assert.equal(poller.state.active, false);
});

test('an answer older than the latest sync() is dropped', async () => {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const updates = [];
  const clock = manualClock();
  const poller = createPoller({
    clock,
    fetchList: async () => { await gate; return [env('a', 'running')]; },
    onUpdate: (list) => updates.push(list),
  });
  const pending = poller.refresh();
  poller.sync([env('a', 'stopping')]); // the user pressed Stop meanwhile
  release();
  await pending;
  assert.deepEqual(updates, [], 'the stale "running" answer must not win');
  assert.deepEqual(clock.pending(), [2500]);
});

test('stop() cancels the timer and ignores answers in flight', async () => {
  const { clock, fetchList, poller, updates } = setup([[env('a', 'starting')]]);
  await poller.refresh();
  poller.stop();
  await clock.advance(60_000);
  assert.equal(fetchList.calls, 1);
  assert.equal(updates.length, 1);
});

test('polls slowly while something runs, when asked to', async () => {
  const clock = manualClock();
  const lists = [[env('a', 'running')], [env('a', 'stopped')]];
  let calls = 0;
  const poller = createPoller({
    fetchList: async () => lists[Math.min(calls++, lists.length - 1)],
    clock,
    intervalMs: 1000,
    slowIntervalMs: 30000,
    shouldPollSlowly: (list) => list.some((e) => e.status === 'running'),
  });
  await poller.refresh();
  assert.equal(poller.state.nextDelay, 30000, 'running: the slow interval');
  await poller.refresh();
  assert.equal(poller.state.scheduled, false, 'nothing runs: no polling');
});
