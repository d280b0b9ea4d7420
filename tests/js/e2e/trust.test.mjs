// Workspace Trust in the real VS Code workbench (code-server 4.100.3 run by
// the real agent behind `handler serve`), in headless Chromium: the starter
// project opens trusted with no question asked; a person who un-trusts it
// finds it still untrusted after a reload (the agent seeds once per
// browser); an environment created from a Git repository (the loopback git
// server) opens its clone in Restricted Mode. Screenshots in
// test-artifacts/e2e/trust-*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startGitServer } from './git-server.mjs';
import { ARTIFACTS, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';
import { restrictedItem, trustAnswer, trustEditor, untrust, workbenchUp } from '../ide/trust.mjs';

let serve;
let browser;
let gitServer;

before(async () => {
  gitServer = await startGitServer();
  // The test-only setting lets repositories come from the loopback git server.
  ({ serve, browser } = await startServeAndBrowser({ DEV8_TEST_ALLOW_LOOPBACK_GIT: '1' }));
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
  await gitServer?.stop();
});

/** An API call from the dashboard's origin with the context's session cookie. */
async function api(context, method, path, data) {
  const r = await context.request.fetch(`${serve.url}${path}`, { method, headers: { origin: serve.url }, data });
  return { status: r.status(), body: await r.json().catch(() => null) };
}

/** A new environment (`extra`: more fields of the create), once it runs. */
async function running(context, name, extra = {}) {
  const created = await api(context, 'POST', '/api/environments', { name, baseImage: 'node', preset: 'small', ...extra });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = created.body.environment.id;
  const deadline = Date.now() + 120_000;
  for (;;) {
    const env = (await api(context, 'GET', `/api/environments/${id}`)).body?.environment;
    if (env?.status === 'running') return id;
    assert.ok(Date.now() < deadline, `not running: ${JSON.stringify(env)}\n${serve.log().slice(-3000)}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

/** Opens (or loads again) the workbench and waits until it has restored. */
async function workbench(page, id) {
  await page.goto(id ? `${serve.url}/api/environments/${id}/ide` : page.url());
  await workbenchUp(page);
}

/** The trusted-folder list the workbench keeps in this browser. */
async function storedTrust(page) {
  return page.evaluate(() => new Promise((ok, fail) => {
    const r = indexedDB.open('vscode-web-state-db-global');
    r.onerror = () => fail(r.error);
    r.onsuccess = () => {
      const get = r.result.transaction('ItemTable').objectStore('ItemTable').get('content.trust.model.key');
      get.onsuccess = () => { r.result.close(); ok(get.result === undefined ? null : JSON.parse(get.result)); };
    };
  }));
}

test('the starter project opens trusted, and a person who un-trusts it is not overridden', { timeout: 420_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  assert.equal((await api(context, 'POST', '/api/auth/signup', {
    email: 'starter@example.com', password: 'correct-horse-battery',
  })).status, 201);
  const id = await running(context, 'starter');
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await workbench(page, id);
  const folder = new URL(page.url()).searchParams.get('folder');
  assert.match(folder, /\/home\/workspace$/);
  // Given a moment, no question comes and Restricted Mode never shows.
  await page.waitForTimeout(3_000);
  assert.equal(await trustAnswer(page, true).count(), 0, 'no Workspace Trust question');
  assert.equal(await restrictedItem(page).count(), 0, 'no Restricted Mode indicator');
  let editor = await trustEditor(page);
  await editor.getByText('You trust this folder').waitFor();
  assert.ok(await editor.evaluate((e) => e.classList.contains('trusted')));
  assert.deepEqual((await storedTrust(page)).uriTrustInfo, [{
    uri: { $mid: 1, path: folder, scheme: 'vscode-remote', authority: new URL(page.url()).host },
    trusted: true,
  }]);
  await page.screenshot({ path: join(ARTIFACTS, 'trust-starter-trusted.png') });

  // The person changes their mind: Restricted Mode, and so after reloads.
  await untrust(page, 'workspace');
  // Nothing was seeded again. VS Code asks its own question once (the
  // person never answered it in this browser): they keep Restricted Mode.
  await trustAnswer(page, true).waitFor({ timeout: 30_000 });
  assert.deepEqual((await storedTrust(page)).uriTrustInfo, [], 'the starter stays un-trusted');
  await trustAnswer(page, false).click();
  // The workbench writes its storage every 5 s (the answer included).
  await page.waitForTimeout(7_000);
  await workbench(page);
  await page.waitForTimeout(3_000);
  assert.equal(await trustAnswer(page, true).count(), 0, 'asked once');
  assert.match(await restrictedItem(page).innerText(), /Restricted Mode/);
  editor = await trustEditor(page);
  await editor.getByText('You are in Restricted Mode').waitFor();
  assert.deepEqual((await storedTrust(page)).uriTrustInfo, [], 'still un-trusted');
  await page.screenshot({ path: join(ARTIFACTS, 'trust-starter-untrusted.png') });
  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});

test('an environment created from a repository opens its clone in Restricted Mode', { timeout: 300_000 }, async () => {
  const repo = gitServer.repository('tools', { 'README.md': '# tools\n', 'package.json': '{"name":"tools"}\n' });
  const context = await browser.newContext({ viewport: DESKTOP });
  assert.equal((await api(context, 'POST', '/api/auth/signup', {
    email: 'cloner@example.com', password: 'correct-horse-battery',
  })).status, 201);
  const id = await running(context, 'cloned', { repository: { url: repo } });
  const page = await context.newPage();
  await workbench(page, id);
  assert.match(new URL(page.url()).searchParams.get('folder'), /\/home\/workspace\/tools$/);
  // The page is code-server's own: nothing held, nothing seeded.
  assert.equal(await page.locator('script[data-dev8-main]').count(), 0);
  await trustAnswer(page, true).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(ARTIFACTS, 'trust-repository-question.png') });
  await trustAnswer(page, false).click();
  await restrictedItem(page).waitFor({ timeout: 30_000 });
  assert.equal(await storedTrust(page), null, 'nothing trusted in this browser');
  await page.screenshot({ path: join(ARTIFACTS, 'trust-repository-restricted.png') });
  await context.close();
});
