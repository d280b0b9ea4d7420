// Starts the real `handler serve` (debug build) on a free loopback port with
// a fresh data dir, for end-to-end tests. Stops it (and with it every
// environment process) when asked.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROOT = resolve(import.meta.dirname, '../../..');

async function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

export async function startServe(env = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'dev8-e2e-'));
  // Where cargo put it: CARGO_TARGET_DIR (relative to the project root, where
  // scripts/test.sh runs cargo) or target/.
  const bin = join(resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target'), 'debug', 'handler');
  const url = `http://127.0.0.1:${port}`;
  let child;
  let log = '';

  async function run() {
    child = spawn(bin, ['serve', '--port', String(port), '--data-dir', dataDir], {
      cwd: ROOT,
      // Two accounts on one machine: the test says that every account's IDE
      // runs as the same OS user (serve refuses a second account otherwise).
      env: { ...process.env, DEV8_LOG: 'info', DEV8_SIGNUP: 'open', DEV8_LOCAL_SHARED_USER: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`handler serve exited early:\n${log}`);
      try {
        const r = await fetch(`${url}/api/health`);
        if (r.ok) break;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`handler serve did not answer within 20 s:\n${log}`);
      await sleep(100);
    }
  }

  async function halt() {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const done = new Promise((ok) => child.once('exit', ok));
      await Promise.race([done, sleep(15_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }

  await run();
  return {
    url,
    /** The data dir (`environments/<id>/home` is an environment's home). */
    dataDir,
    log: () => log,
    /** Ends the server process, keeping its data dir (for `start()` again). */
    halt,
    /** Starts the server again on the same port and data dir. */
    start: run,
    async stop() {
      await halt();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
