// Live-status polling for the environment list: polls while anything is
// transitional, backs off on errors, pauses while the page is hidden and stops
// when everything is stable. No DOM: timers, clock and fetch are injected.

import { anyTransitional } from './transitions.js';

const realClock = Object.freeze({
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(id),
  now: () => Date.now(),
});

/**
 * Creates a poller.
 *
 * Options:
 * - `fetchList()` resolves to the environment array (rejects on failure);
 * - `onUpdate(list)` receives every successful answer;
 * - `onError(error, { failures, delayMs, fatal })` hears about failures;
 * - `clock` `{ setTimeout, clearTimeout, now }`, real timers by default;
 * - `intervalMs` between polls while transitional (2500);
 * - `maxBackoffMs` cap for the error backoff (30000);
 * - `isFatal(error)` stops polling altogether (default: a 401);
 * - `shouldPoll(list)` whether to keep polling (default: anything transitional);
 * - `slowIntervalMs` and `shouldPollSlowly(list)`: when nothing is
 *   transitional but `shouldPollSlowly` says so (e.g. something runs and its
 *   usage changes), poll every `slowIntervalMs` (default: never);
 * - `refreshAfterHiddenMs`: coming back to a page hidden at least this long
 *   refreshes once even when nothing was transitional (60000).
 *
 * A newer request always wins: an answer to a request made before the latest
 * `refresh()`, `sync()` or `stop()` is dropped, so a slow poll cannot undo
 * the state an action just returned.
 */
export function createPoller({
  fetchList,
  onUpdate = () => {},
  onError = () => {},
  clock = realClock,
  intervalMs = 2500,
  maxBackoffMs = 30000,
  isFatal = (error) => error?.status === 401,
  shouldPoll = anyTransitional,
  slowIntervalMs = null,
  shouldPollSlowly = () => false,
  refreshAfterHiddenMs = 60000,
}) {
  let timer = null;
  let nextDelay = null;
  let seq = 0;
  let active = false;
  let hidden = false;
  let hiddenSince = 0;
  let failures = 0;
  let inFlight = 0;

  function clearTimer() {
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
    nextDelay = null;
  }

  function schedule(delayMs) {
    clearTimer();
    if (hidden) return; // resumed by setHidden(false)
    nextDelay = delayMs;
    timer = clock.setTimeout(() => {
      timer = null;
      nextDelay = null;
      tick();
    }, delayMs);
  }

  /** Polls at `intervalMs` or `slowIntervalMs` for `list`; false: not at all. */
  function follow(list) {
    if (shouldPoll(list)) schedule(intervalMs);
    else if (slowIntervalMs && shouldPollSlowly(list)) schedule(slowIntervalMs);
    else return false;
    return true;
  }

  function backoff(count) {
    return Math.min(intervalMs * 2 ** count, maxBackoffMs);
  }

  async function tick() {
    clearTimer();
    const mine = ++seq;
    inFlight += 1;
    let list;
    try {
      list = await fetchList();
    } catch (error) {
      if (mine !== seq) return;
      if (isFatal(error)) {
        active = false;
        failures = 0;
        onError(error, { failures: 0, delayMs: null, fatal: true });
        return;
      }
      failures += 1;
      active = true;
      const delayMs = backoff(failures);
      schedule(delayMs);
      onError(error, { failures, delayMs, fatal: false });
      return;
    } finally {
      inFlight -= 1;
    }
    if (mine !== seq) return;
    failures = 0;
    active = follow(list);
    onUpdate(list);
  }

  return {
    /** Fetches now (dropping any older request in flight); resolves when handled. */
    refresh() {
      return tick();
    },

    /**
     * Tells the poller about a list the app obtained itself (e.g. from an
     * action's answer): starts polling if it is transitional, stops if not.
     */
    sync(list) {
      seq += 1;
      failures = 0;
      active = follow(list);
      if (!active) clearTimer();
    },

    /** Pauses while hidden; on return polls at once if it was polling. */
    setHidden(isHidden) {
      if (isHidden === hidden) return;
      hidden = isHidden;
      if (hidden) {
        hiddenSince = clock.now();
        clearTimer();
        return;
      }
      const away = clock.now() - hiddenSince;
      if (active || away >= refreshAfterHiddenMs) tick();
    },

    /** Stops polling and drops any answer still in flight (e.g. on sign-out). */
    stop() {
      seq += 1;
      active = false;
      failures = 0;
      clearTimer();
    },

    /** A snapshot for tests and status text. */
    get state() {
      return { active, hidden, failures, nextDelay, scheduled: timer !== null, inFlight: inFlight > 0 };
    },
  };
}
