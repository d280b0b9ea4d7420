// Test doubles for the pure modules: a manual clock and a scripted fetch.

/** A manual clock: timers fire only when `advance(ms)` passes their deadline. */
export function manualClock(start = 0) {
  let now = start;
  let nextId = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** Moves time forward, firing due timers in order and letting promises settle. */
    async advance(ms) {
      const target = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= target).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [id, t] = due;
        timers.delete(id);
        now = t.at;
        t.fn();
        await settle();
      }
      now = target;
      await settle();
    },
    /** Delays of the pending timers, from now. */
    pending: () => [...timers.values()].map((t) => t.at - now),
  };
}

/** Lets pending promise callbacks run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A fake list fetch answering from a script: each call takes the next entry
 * (the last repeats). An entry is an environment array, or an Error to reject with.
 */
export function scriptedFetch(script) {
  const fake = async () => {
    fake.calls += 1;
    const step = script[Math.min(fake.calls - 1, script.length - 1)];
    if (step instanceof Error) throw step;
    return step;
  };
  fake.calls = 0;
  return fake;
}

export function env(id, status, extra = {}) {
  return { id, name: `env-${id}`, status, stopCause: null, statusReason: null, ...extra };
}

export function httpError(status) {
  return Object.assign(new Error(`HTTP ${status}`), { status });
}
