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
import { startServe } from './serve.mjs';
import { startGitServer } from './git-server.mjs';
import { launch, ARTIFACTS, DESKTOP } from './browser.mjs';

let serve;
let browser;
let gitServer;

before(async () => {
  gitServer = await startGitServer();
  // The test-only setting lets repositories come from the loopback git server.
  serve = await startServe({ DEV8_TEST_ALLOW_LOOPBACK_GIT: '1' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await serve?.stop();
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

/** Opens (or reloads into) the workbench and waits until its status bar is up. */
async function workbench(page, id) {
  if (id) await page.goto(`${serve.url}/api/environments/${id}/ide`);
  else await page.goto(page.url());
  await page.locator('.monaco-workbench').waitFor({ timeout: 120_000 });
  // The status bar's own entries come once the workbench has restored.
  await page.locator('[id="status.problems"]').waitFor({ timeout: 60_000 });
}

const restrictedItem = (page) => page.locator('[id="status.workspaceTrust"]');
const trustQuestion = (page) => page.getByRole('button', { name: 'Yes, I trust the authors' });

/** The Workspace Trust editor (the command palette's "Manage Workspace Trust"). */
async function trustEditor(page) {
  // Typed only into the command palette (a restored trust editor's button
  // may hold the focus before it opens).
  await page.keyboard.press('F1');
  const palette = page.locator('.quick-input-widget input');
  await palette.waitFor({ timeout: 30_000 });
  await palette.pressSequentially('Workspaces: Manage Workspace Trust', { delay: 10 });
  await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: 'Manage Workspace Trust' }).waitFor();
  await palette.press('Enter');
  const editor = page.locator('.workspace-trust-editor');
  await editor.waitFor({ timeout: 30_000 });
  return editor;
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
  assert.equal(await trustQuestion(page).count(), 0, 'no Workspace Trust question');
  assert.equal(await restrictedItem(page).count(), 0, 'no Restricted Mode indicator');
  let editor = await trustEditor(page);
  await editor.getByText('You trust this folder').waitFor();
  assert.ok(await editor.evaluate((e) => e.classList.contains('trusted')));
  assert.deepEqual((await storedTrust(page)).uriTrustInfo, [{
    uri: { $mid: 1, path: folder, scheme: 'vscode-remote', authority: new URL(page.url()).host },
    trusted: true,
  }]);
  await page.screenshot({ path: join(ARTIFACTS, 'trust-starter-trusted.png') });

  // The person changes their mind (in the web workbench a trusted remote
  // folder is un-trusted by deleting it from the list): Restricted Mode, and
  // so after a reload.
  const row = editor.getByRole('listitem', { name: /^~\/workspace on .*, trusted$/ });
  await row.hover();
  await row.getByRole('button', { name: 'Delete Path' }).click();
  // The workbench reloads itself into Restricted Mode; then loads of our own.
  await restrictedItem(page).waitFor({ timeout: 30_000 });
  await page.waitForLoadState('load');
  await page.waitForTimeout(3_000);
  await workbench(page);
  // Nothing was seeded again. VS Code asks its own question once (the
  // person never answered it in this browser): they keep Restricted Mode.
  await trustQuestion(page).waitFor({ timeout: 30_000 });
  assert.deepEqual((await storedTrust(page)).uriTrustInfo, [], 'the starter stays un-trusted');
  await page.getByRole('button', { name: "No, I don't trust the authors" }).click();
  // The workbench writes its storage every 5 s (the answer included).
  await page.waitForTimeout(7_000);
  await workbench(page);
  await page.waitForTimeout(3_000);
  assert.equal(await trustQuestion(page).count(), 0, 'asked once');
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
  await trustQuestion(page).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(ARTIFACTS, 'trust-repository-question.png') });
  await page.getByRole('button', { name: "No, I don't trust the authors" }).click();
  await restrictedItem(page).waitFor({ timeout: 30_000 });
  assert.equal(await storedTrust(page), null, 'nothing trusted in this browser');
  await page.screenshot({ path: join(ARTIFACTS, 'trust-repository-restricted.png') });
  await context.close();
});
