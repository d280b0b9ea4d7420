// The account page and an environment's history, end to end in real
// headless Chromium against the real `handler serve` (local compute, real
// code-server) with a real OpenID provider (npm `oidc-provider`,
// tests/oidc/provider.mjs) configured as "Test SSO": linking is driven through
// the provider's own login and consent pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import readline from 'node:readline';
import { startServe, ROOT } from './serve.mjs';
import { launch, shots, accessibleAtBothWidths, card, waitForStatus, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

const PASSWORD = 'correct-horse-battery';
const SSO_EMAIL = 'sso@example.com';

let serve;
let browser;
let provider;

/** Starts the OpenID provider and registers `serve` as its client once `serve` is up. */
async function startProvider() {
  const child = spawn(process.execPath, [join(ROOT, 'tests/oidc/provider.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const next = () => new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('oidc-provider did not answer within 30 s')), 30_000);
    lines.once('line', (line) => { clearTimeout(timer); ok(JSON.parse(line)); });
  });
  const { issuer } = await next();
  return {
    issuer,
    async register(redirectUri) {
      child.stdin.write(`${JSON.stringify({ clientId: 'dev8-e2e', clientSecret: 'e2e-client-secret', redirectUri, email: SSO_EMAIL })}\n`);
      assert.equal((await next()).ready, true);
    },
    stop() { child.stdin.end(); child.kill(); },
  };
}

before(async () => {
  provider = await startProvider();
  serve = await startServe({
    DEV8_OIDC_ISSUER: provider.issuer,
    DEV8_OIDC_CLIENT_ID: 'dev8-e2e',
    DEV8_OIDC_CLIENT_SECRET: 'e2e-client-secret',
    DEV8_OIDC_NAME: 'Test SSO',
  });
  await provider.register(`${serve.url}/api/auth/oidc/callback`);
  browser = await launch();
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
  provider?.stop();
});


/** Logs in and consents at the provider's own pages, back to Dev8. */
async function atProvider(page) {
  const login = page.url();
  await page.locator('input[name="login"]').fill('ada');
  await page.locator('input[name="password"]').fill('anything');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.href !== login);
  if (!page.url().startsWith(serve.url)) {
    await page.locator('button[type="submit"]').click(); // consent
    await page.waitForURL((u) => u.href.startsWith(serve.url));
  }
}



/** A cookie-authenticated API call from the page's session (Origin as a browser sends it). */
async function call(page, method, path) {
  const r = await page.request.fetch(`${serve.url}${path}`, { method, headers: { Origin: serve.url } });
  assert.ok(r.ok(), `${method} ${path}: ${r.status()} ${await r.text()}`);
  return r;
}

async function deleteAccount(page, email) {
  await page.getByRole('button', { name: 'Delete account…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete your account?' });
  const confirm = dialog.getByLabel('Type your email to confirm');
  await confirm.fill('someone-else@example.com');
  await dialog.getByRole('button', { name: 'Delete account' }).click();
  await dialog.getByText(`Doesn’t match ${email}`).waitFor();
  return { dialog, confirm };
}

test('history, linking and unlinking, activity paging, account deletion', { timeout: 300_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill('ada@example.com');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();

  // An environment that is created, stopped by its owner and started again.
  await page.getByRole('button', { name: 'New environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('history-demo');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await waitForStatus(page, 'history-demo', 'Running');
  await card(page, 'history-demo').getByRole('button', { name: 'Stop' }).click();
  await waitForStatus(page, 'history-demo', 'Stopped');
  await card(page, 'history-demo').getByRole('button', { name: 'Start' }).click();
  await waitForStatus(page, 'history-demo', 'Running');
  // More starts than one page holds (a start of a running environment is
  // still recorded), so the history pages.
  const id = await card(page, 'history-demo').getAttribute('data-env-id');
  for (let i = 0; i < 9; i += 1) await call(page, 'POST', `/api/environments/${id}/start`);

  await card(page, 'history-demo').getByRole('link', { name: 'history-demo' }).click();
  const history = page.getByRole('list', { name: 'History, newest first' });
  await history.getByRole('listitem').first().waitFor();
  assert.equal(await history.getByRole('listitem').count(), 10, 'one page of ten');
  assert.equal(await history.getByRole('listitem').first().locator('.log-text').textContent(), 'You started this environment');
  assert.equal(await history.getByText('You created this environment').count(), 0, 'the oldest are on the next page');
  const older = page.getByRole('button', { name: 'Show older' });
  await older.focus();
  await page.keyboard.press('Enter');
  await history.getByText('You created this environment').waitFor();
  await history.getByText('You stopped this environment').waitFor();
  assert.equal(await history.getByRole('listitem').count(), 12, 'create, stop, start and nine more starts');
  assert.ok(await older.isHidden(), 'no more pages');
  assert.equal(await page.evaluate(() => document.activeElement?.closest('li')?.querySelector('.log-text')?.textContent),
    'You stopped this environment', 'the keyboard lands on the first record of the new page');
  await accessibleAtBothWidths(page, 'detail page with history');
  await shots(page, 'account-01-history');

  // The account page, from the header.
  await page.getByRole('link', { name: 'Account', exact: true }).click();
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  const methods = page.getByRole('list', { name: 'Ways to sign in' });
  await methods.getByText('Password', { exact: true }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Account', exact: true }).getAttribute('aria-current'), 'page');
  await accessibleAtBothWidths(page, 'account page');
  await shots(page, 'account-02-password-only');

  // Link the provider through its own login and consent pages.
  await page.getByRole('button', { name: 'Link Test SSO', exact: true }).click();
  await page.waitForURL((u) => u.href.startsWith(provider.issuer));
  await atProvider(page);
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await page.getByText('Sign-in method linked.').waitFor();
  const unlink = methods.getByRole('button', { name: 'Unlink Test SSO' });
  await unlink.waitFor();
  assert.equal(await unlink.getAttribute('aria-disabled'), null, 'the password remains: unlinking is allowed');
  assert.equal(await page.getByRole('button', { name: 'Link Test SSO', exact: true }).count(), 0);
  const activity = page.getByRole('list', { name: 'Account activity, newest first' });
  await activity.getByText('You linked Test SSO as a way to sign in').waitFor();
  await accessibleAtBothWidths(page, 'account page with a linked provider');
  await shots(page, 'account-03-linked');

  // Activity pages: sign-ins from API clients fill more than a page of 20.
  for (let i = 0; i < 10; i += 1) {
    const r = await page.request.post(`${serve.url}/api/auth/token`, { data: { email: 'ada@example.com', password: PASSWORD } });
    assert.equal(r.status(), 200);
  }
  await page.reload();
  // Environment names known (the log is read again once they are).
  await activity.getByText('You started history-demo').first().waitFor();
  assert.equal(await activity.getByRole('listitem').count(), 20);
  assert.equal(await activity.getByText('Your account was created').count(), 0);
  await page.getByRole('button', { name: 'Show older' }).click();
  await activity.getByText('Your account was created').waitFor();
  await activity.getByText('You created history-demo').waitFor();
  assert.ok(await activity.getByRole('listitem').count() > 20);

  // Unlink: the row goes, linking is offered again.
  await methods.getByRole('button', { name: 'Unlink Test SSO' }).click();
  await page.getByText('Test SSO unlinked').waitFor();
  await page.getByRole('button', { name: 'Link Test SSO', exact: true }).waitFor();
  assert.equal(await methods.getByRole('listitem').count(), 1, 'the password only');
  const identities = await (await call(page, 'GET', '/api/auth/identities')).json();
  assert.deepEqual(identities.identities, []);

  // Delete the account: the typed email must match.
  const { dialog: confirmDialog, confirm } = await deleteAccount(page, 'ada@example.com');
  await accessibleAtBothWidths(page, 'delete-account dialog');
  await shots(page, 'account-04-confirm-delete');
  await confirm.fill('ada@example.com');
  await confirmDialog.getByRole('button', { name: 'Delete account' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.getByText('Your account and its environments were deleted.').waitFor();
  await shots(page, 'account-05-deleted');
  const gone = await page.request.post(`${serve.url}/api/auth/token`, { data: { email: 'ada@example.com', password: PASSWORD } });
  assert.equal(gone.status(), 401, 'the account is gone');

  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});

test('the last way in cannot be unlinked, and the page says why', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  // An account made by signing in with the provider: no password.
  await page.goto(`${serve.url}/#/signin`);
  await page.getByRole('link', { name: 'Continue with Test SSO' }).click();
  await page.waitForURL((u) => u.href.startsWith(provider.issuer));
  await atProvider(page);
  await page.getByRole('heading', { name: 'Environments' }).waitFor();

  await page.getByRole('link', { name: 'Account', exact: true }).click();
  const methods = page.getByRole('list', { name: 'Ways to sign in' });
  const unlink = methods.getByRole('button', { name: 'Unlink Test SSO' });
  await unlink.waitFor();
  assert.equal(await methods.getByText('Password', { exact: true }).count(), 0, await methods.innerText());
  assert.equal(await unlink.getAttribute('aria-disabled'), 'true');
  const reasonId = await unlink.getAttribute('aria-describedby');
  const reason = await page.locator(`#${reasonId}`).textContent();
  assert.match(reason, /only way to sign in/);
  // Still focusable (so the reason is heard), and pressing it changes nothing.
  await unlink.focus();
  await page.keyboard.press('Enter');
  await page.waitForTimeout(300);
  assert.equal(await methods.getByRole('listitem').count(), 1);
  await accessibleAtBothWidths(page, 'account page, provider only');
  await shots(page, 'account-06-last-way-in');

  const { dialog, confirm } = await deleteAccount(page, SSO_EMAIL);
  await confirm.fill(SSO_EMAIL);
  await dialog.getByRole('button', { name: 'Delete account' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();

  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});
