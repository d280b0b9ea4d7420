// The dashboard end to end, in real headless Chromium, against the real
// `handler serve` with the real local backend (code-server behind the agent).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startGitServer } from './git-server.mjs';
import { shots, seriousViolations, accessibleAtBothWidths, card, waitForStatus, ARTIFACTS, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

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

async function signUp(page, email) {
  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();
}



test('a person does everything from the browser', { timeout: 240_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(serve.url);
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'sign-in page');
  await shots(page, '01-sign-in');

  await signUp(page, 'ada@example.com');
  await page.getByRole('button', { name: 'Create your first environment' }).waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'empty list');
  await shots(page, '02-empty');

  // Validation errors from the server render next to the field.
  await page.getByRole('button', { name: 'New environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('   ');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await dialog.getByText('Give it a name').first().waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'create dialog');
  await shots(page, '03-create-errors');

  await dialog.getByLabel('Name').fill('hello-node');
  await dialog.getByLabel('Template').selectOption({ label: 'Node.js' });
  await dialog.getByLabel('Size').selectOption({ index: 0 });
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await card(page, 'hello-node').waitFor();
  await waitForStatus(page, 'hello-node', 'Running', 90_000);
  assert.deepEqual(await seriousViolations(page), [], 'list with an environment');
  await shots(page, '04-running');

  // The name is taken (the dialog knows the list's names, in any case).
  await page.getByRole('button', { name: 'New environment' }).click();
  const again = page.getByRole('dialog');
  await again.getByLabel('Name').fill('Hello-Node');
  await again.getByRole('button', { name: 'Create environment' }).click();
  await again.getByText(/You already have an environment called Hello-Node/).waitFor();
  await again.getByRole('button', { name: 'Cancel' }).click();

  // Open IDE: a real link in a new tab, through the ticket redirect, to VS Code.
  const [ide] = await Promise.all([
    context.waitForEvent('page'),
    card(page, 'hello-node').getByRole('link', { name: 'Open IDE' }).click(),
  ]);
  await ide.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  assert.match(new URL(ide.url()).hostname, /^e-[a-z0-9]+\.localhost$/);
  assert.ok(!ide.url().includes('ticket='), 'the ticket is gone from the address bar');
  await ide.waitForTimeout(2000);
  await ide.screenshot({ path: join(ARTIFACTS, '05-ide.png') });
  await ide.close();

  await card(page, 'hello-node').getByRole('button', { name: 'Stop' }).click();
  await waitForStatus(page, 'hello-node', 'Stopped');
  await shots(page, '06-stopped');
  await card(page, 'hello-node').getByRole('button', { name: 'Start' }).click();
  await waitForStatus(page, 'hello-node', 'Running', 90_000);

  // The detail view.
  await card(page, 'hello-node').getByRole('link', { name: 'hello-node' }).click();
  await page.getByRole('heading', { name: 'hello-node' }).waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'detail page');
  await shots(page, '07-detail');
  await page.goBack();

  await card(page, 'hello-node').getByRole('button', { name: 'Delete' }).click();
  const confirm = page.getByRole('dialog');
  await confirm.getByText('hello-node').first().waitFor();
  // Delete works only once the name is typed exactly.
  const deleteButton = confirm.getByRole('button', { name: 'Delete' });
  assert.equal(await deleteButton.isDisabled(), true, 'Delete waits for the typed name');
  await confirm.getByLabel('Type hello-node to confirm').fill('Hello-Node');
  assert.equal(await deleteButton.isDisabled(), true, 'the name must match exactly');
  await confirm.getByLabel('Type hello-node to confirm').fill('hello-node');
  await shots(page, '08-confirm-delete');
  assert.deepEqual(await seriousViolations(page), [], 'delete dialog');
  await deleteButton.click();
  await page.getByRole('button', { name: 'Create your first environment' }).waitFor({ timeout: 60_000 });
  await shots(page, '09-empty-again');

  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});

test('a second user never sees the first one’s environments', { timeout: 120_000 }, async () => {
  const a = await browser.newContext({ viewport: DESKTOP });
  const pa = await a.newPage();
  await signUp(pa, 'first@example.com');
  await pa.getByRole('button', { name: 'New environment' }).click();
  await pa.getByRole('dialog').getByLabel('Name').fill('private-one');
  await pa.getByRole('dialog').getByRole('button', { name: 'Create environment' }).click();
  await card(pa, 'private-one').waitFor();

  const b = await browser.newContext({ viewport: DESKTOP });
  const pb = await b.newPage();
  await signUp(pb, 'second@example.com');
  await pb.getByRole('button', { name: 'Create your first environment' }).waitFor();
  assert.equal(await pb.locator('article[data-env-id]').count(), 0);

  // Clean up: delete it so the server stops its processes promptly.
  await card(pa, 'private-one').getByRole('button', { name: 'Delete' }).click();
  await pa.getByRole('dialog').getByLabel('Type private-one to confirm').fill('private-one');
  await pa.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await pa.getByRole('button', { name: 'Create your first environment' }).waitFor({ timeout: 60_000 });
  await a.close();
  await b.close();
});

test('a person starts from a Git repository and sets their dotfiles', { timeout: 240_000 }, async () => {
  const repo = gitServer.repository('hello', { 'README.md': '# hello\n' });
  const dotfiles = gitServer.repository('dotfiles', { 'install.sh': 'echo installed\n' });
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await signUp(page, 'grace@example.com');

  // The dotfiles setting on the account page; the server's rules show under the field.
  await page.goto(`${serve.url}/#/account`);
  const dots = page.getByLabel('Dotfiles repository');
  await dots.fill('https://localhost/grace/dotfiles');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/must name a public host/).waitFor();
  await dots.fill(dotfiles);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Dotfiles saved').waitFor();
  await accessibleAtBothWidths(page, 'account page with dotfiles');
  await shots(page, '10-dotfiles');

  await page.goto(`${serve.url}/#/`);
  await page.getByRole('heading', { name: 'Environments' }).waitFor();
  await page.getByRole('button', { name: 'New environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('from-repo');
  await dialog.getByLabel('Git repository').fill('https://token@github.com/grace/hello.git');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await dialog.getByText(/must not contain credentials/).waitFor();
  assert.deepEqual(await seriousViolations(page), [], 'create dialog with a repository error');
  await shots(page, '11-create-from-repository');
  await dialog.getByLabel('Git repository').fill(repo);
  await dialog.getByLabel('Branch, tag or commit').fill('main');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await card(page, 'from-repo').waitFor();
  await waitForStatus(page, 'from-repo', 'Running', 90_000);

  // A ref that does not exist: the environment runs, its card shows the error.
  await page.getByRole('button', { name: 'New environment' }).click();
  const again = page.getByRole('dialog');
  await again.getByLabel('Name').fill('bad-ref');
  await again.getByLabel('Git repository').fill(repo);
  await again.getByLabel('Branch, tag or commit').fill('no-such-branch');
  await again.getByRole('button', { name: 'Create environment' }).click();
  await waitForStatus(page, 'bad-ref', 'Running', 90_000);
  await card(page, 'bad-ref').getByText(/could not be cloned/).waitFor({ timeout: 60_000 });
  assert.equal(await card(page, 'from-repo').getByText(/could not be cloned/).count(), 0);
  await accessibleAtBothWidths(page, 'list with a clone error');
  await shots(page, '12-clone-error');

  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});
