// The IDE's address through `serve`'s front door, in real headless Chromium
// (which resolves `e-<id>.localhost` to loopback by itself), against the real
// `handler serve` with the real local backend: a tab left open across
// stop -> start shows Dev8's not-running page while stopped and the IDE
// again, at the same address, once it runs. The IDE tab's title starts with
// the environment's name, and a rename shows at the next start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { shots, seriousViolations, ARTIFACTS, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

let serve;
let browser;

before(async () => {
  ({ serve, browser } = await startServeAndBrowser());
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});

/** An API call from the dashboard's origin with the context's session cookie. */
async function api(context, method, path, data) {
  const r = await context.request.fetch(`${serve.url}${path}`, {
    method,
    headers: { origin: serve.url },
    data,
  });
  return { status: r.status(), body: await r.json().catch(() => null) };
}

async function waitFor(context, id, status, timeout = 90_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const env = (await api(context, 'GET', `/api/environments/${id}`)).body?.environment;
    if (env?.status === status) return env;
    assert.ok(Date.now() < deadline, `not ${status} within ${timeout} ms: ${JSON.stringify(env)}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

/** Waits until the tab's title starts with `prefix` (the workbench sets it once its extensions are read). */
async function titleStartsWith(page, prefix) {
  try {
    await page.waitForFunction((p) => document.title.startsWith(p), prefix, { timeout: 60_000 });
  } catch (error) {
    throw new Error(`${error.message}\ntitle: ${JSON.stringify(await page.title())}, expected it to start with ${JSON.stringify(prefix)}`);
  }
}

test('an IDE tab left open across stop and start comes back at the same address', { timeout: 300_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const signup = await api(context, 'POST', '/api/auth/signup', {
    email: 'tab@example.com', password: 'correct-horse-battery',
  });
  assert.equal(signup.status, 201);
  const created = await api(context, 'POST', '/api/environments', {
    name: 'tab-web', baseImage: 'node', preset: 'small',
  });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = created.body.environment.id;
  const running = await waitFor(context, id, 'running');
  const address = running.ideUrl;
  assert.match(address, new RegExp(`^http://e-${id}\\.localhost:\\d+/$`));

  const ide = await context.newPage();
  await ide.goto(`${serve.url}/api/environments/${id}/ide`);
  await ide.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  assert.equal(new URL(ide.url()).origin, new URL(address).origin);
  // The tab's title names the environment (VS Code's title, after it).
  await titleStartsWith(ide, 'tab-web - ');

  assert.equal((await api(context, 'POST', `/api/environments/${id}/stop`, {})).status, 202);
  await waitFor(context, id, 'stopped');
  await ide.reload();
  await ide.getByRole('heading', { name: 'This IDE is not running' }).waitFor();
  assert.equal(new URL(ide.url()).origin, new URL(address).origin, 'the address stays');
  assert.deepEqual(await seriousViolations(ide), [], 'not-running page');
  await shots(ide, 'front-door-not-running');
  const link = await ide.getByRole('link', { name: 'Open in Dev8' }).getAttribute('href');
  assert.equal(link, `${serve.url}/api/environments/${id}/ide`);
  // Looking at the page (and its reloads) starts nothing.
  await ide.waitForTimeout(6_000);
  assert.equal((await api(context, 'GET', `/api/environments/${id}`)).body.environment.status, 'stopped');
  // Renamed while stopped: the next start's tab title has the new name.
  assert.equal((await api(context, 'PATCH', `/api/environments/${id}`, { name: 'tab-api' })).status, 200);

  assert.equal((await api(context, 'POST', `/api/environments/${id}/start`, {})).status, 202);
  await waitFor(context, id, 'running');
  // The page reloads itself; the tab gets a fresh ticket and the IDE again.
  await ide.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  assert.equal(new URL(ide.url()).origin, new URL(address).origin, 'the same address');
  await titleStartsWith(ide, 'tab-api - ');
  await ide.screenshot({ path: join(ARTIFACTS, 'front-door-back.png') });
  await context.close();
});

test('another account’s environment at the front door shows the same page', { timeout: 180_000 }, async () => {
  const owner = await browser.newContext({ viewport: DESKTOP });
  assert.equal((await api(owner, 'POST', '/api/auth/signup', {
    email: 'door-owner@example.com', password: 'correct-horse-battery',
  })).status, 201);
  const created = await api(owner, 'POST', '/api/environments', {
    name: 'private-thing', baseImage: 'node', preset: 'small',
  });
  const id = created.body.environment.id;
  await waitFor(owner, id, 'running');
  assert.equal((await api(owner, 'POST', `/api/environments/${id}/stop`, {})).status, 202);
  await waitFor(owner, id, 'stopped');

  const other = await browser.newContext({ viewport: DESKTOP });
  assert.equal((await api(other, 'POST', '/api/auth/signup', {
    email: 'door-other@example.com', password: 'correct-horse-battery',
  })).status, 201);
  const port = new URL(serve.url).port;
  const page = await other.newPage();
  const texts = [];
  for (const target of [id, '01aaaaaaaaaaaaaaaaaaaaaaaa']) {
    await page.goto(`http://e-${target}.localhost:${port}/`);
    await page.getByRole('heading', { name: 'This IDE is not running' }).waitFor();
    texts.push(await page.locator('main').innerText());
  }
  assert.equal(texts[0], texts[1]);
  assert.ok(!texts[0].includes('private-thing'));
  assert.equal((await api(owner, 'GET', `/api/environments/${id}`)).body.environment.status, 'stopped');
  await owner.close();
  await other.close();
});
