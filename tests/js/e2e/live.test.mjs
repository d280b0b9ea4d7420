// The dashboard tells the truth by itself, in real headless Chromium against
// the real `handler serve` (real agents and code-server): a change made
// elsewhere shows on an open page without a reload; a server restart shows
// the outage banner, then recovers; the IDE address of a stopped environment
// lands on its page with Start, and the IDE opens when it runs; rename with
// case-insensitive names; a common password refused and the password
// changed; a real idle stop by the server's own sweep (a test-only short
// idle minute) shown on open list and detail pages within 15 s, announced
// once; axe-clean at desktop and phone width, screenshots in
// test-artifacts/e2e/live-*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServe } from './serve.mjs';
import { shots, accessibleAtBothWidths, card, waitForStatus, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

const PASSWORD = 'correct-horse-battery';

let serve;
let browser;

before(async () => {
  ({ serve, browser } = await startServeAndBrowser());
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});

async function signUp(page, email, password = PASSWORD, base = serve.url) {
  await page.goto(`${base}/#/signup`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign up' }).click();
}

/** A bearer token for `email`, as an API client elsewhere would hold. */
async function token(email, password = PASSWORD, base = serve.url) {
  const r = await fetch(`${base}/api/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).token;
}

async function apiAs(bearer, method, path, body, base = serve.url) {
  const headers = { authorization: `Bearer ${bearer}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${base}/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}

test('a common password is refused; the password can be changed', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await signUp(page, 'pw@example.com', 'password');
  await page.getByText(/too easy to guess/).first().waitFor();
  await shots(page, 'live-01-weak-password');
  await accessibleAtBothWidths(page, 'sign-up with a weak password');

  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();
  const elsewhere = await token('pw@example.com');

  await page.goto(`${serve.url}/#/account`);
  const form = page.getByRole('region', { name: 'Change password' });
  await form.getByLabel('Current password').fill('not-the-password');
  await form.getByLabel('New password').fill('plum-violin-harbour-42');
  await form.getByRole('button', { name: 'Change password' }).click();
  await form.getByText(/is wrong/).waitFor();
  await form.getByLabel('Current password').fill(PASSWORD);
  await form.getByLabel('New password').fill('qwerty123');
  await form.getByRole('button', { name: 'Change password' }).click();
  await form.getByText(/too easy to guess/).waitFor();
  await shots(page, 'live-02-change-password-refused');
  await accessibleAtBothWidths(page, 'change password with errors');
  await form.getByLabel('New password').fill('plum-violin-harbour-42');
  await form.getByRole('button', { name: 'Change password' }).click();
  await page.getByText('Password changed. Your other sessions were signed out.').waitFor();
  // This page stays signed in; the token held elsewhere does not.
  assert.equal((await apiAs(elsewhere, 'GET', '/auth/me')).status, 401);
  await page.reload();
  await page.getByRole('heading', { name: 'Account', exact: true }).waitFor();
  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});

test('live truth: changes made elsewhere, an outage and recovery, rename, the not-running page', { timeout: 600_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await signUp(page, 'live@example.com');
  await page.getByRole('button', { name: 'Create your first environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('web-app');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  try {
    await waitForStatus(page, 'web-app', 'Running', 240_000);
  } catch (error) {
    await shots(page, 'live-00-not-running-yet');
    throw new Error(`${error.message}\n${serve.log().slice(-3000)}`);
  }
  // One toast per outcome: "…is ready" took the place of "Creating…".
  assert.equal(await page.getByText('Creating web-app…').count(), 0);

  // Names are unique regardless of case.
  await page.getByRole('button', { name: 'New environment' }).click();
  await dialog.getByLabel('Name').fill('Web-App');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await dialog.getByText(/already have an environment called Web-App/).waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  // A stop made elsewhere (an API client) shows on the open page by itself.
  const bearer = await token('live@example.com');
  const id = await card(page, 'web-app').getAttribute('data-env-id');
  assert.equal((await apiAs(bearer, 'POST', `/environments/${id}/stop`)).status, 202);
  const started = Date.now();
  await waitForStatus(page, 'web-app', 'Stopped', 15_000);
  assert.ok(Date.now() - started < 15_000);
  await page.getByText('web-app stopped').first().waitFor();

  // The server goes away: a banner says so, cards say they may be out of
  // date; it comes back: everything recovers without a reload.
  await serve.halt();
  const banner = page.getByRole('status').filter({ hasText: 'Dev8 isn’t answering' });
  await banner.waitFor({ timeout: 15_000 });
  await card(page, 'web-app').getByText(/May be out of date/).waitFor();
  await shots(page, 'live-03-outage');
  await accessibleAtBothWidths(page, 'outage banner');
  await serve.start();
  await banner.waitFor({ state: 'hidden', timeout: 15_000 });
  await page.getByText('Dev8 is answering again').waitFor();
  assert.equal(await card(page, 'web-app').getByText(/May be out of date/).isVisible(), false);

  // Rename in the detail view; saving nothing new says so without a toast.
  await card(page, 'web-app').getByRole('link', { name: 'web-app' }).click();
  await page.getByRole('heading', { name: 'web-app' }).waitFor();
  const settings = page.getByRole('region', { name: 'Settings' });
  await settings.getByRole('button', { name: 'Save' }).click();
  await settings.getByText('Nothing to save').waitFor();
  await settings.getByLabel('Name').fill('');
  await settings.getByRole('button', { name: 'Save' }).click();
  await settings.getByText('Give it a name').waitFor();
  await settings.getByLabel('Name').fill('Web-App');
  await settings.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: 'Web-App' }).waitFor();
  await page.getByText('web-app is now called Web-App').waitFor();
  await shots(page, 'live-04-renamed');
  await accessibleAtBothWidths(page, 'detail after a rename');

  // The IDE address of a stopped environment: its page, with Start; the IDE
  // opens once it runs.
  await page.goto(`${serve.url}/api/environments/${id}/ide`);
  await page.waitForURL(/notice=not-running/);
  const notice = page.getByRole('status').filter({ hasText: 'Your IDE isn’t running' });
  await notice.getByText('Web-App is stopped').waitFor();
  await shots(page, 'live-05-not-running');
  await accessibleAtBothWidths(page, 'not-running notice');
  await notice.getByRole('button', { name: 'Start' }).click();
  await page.waitForURL((url) => !url.href.startsWith(serve.url), { timeout: 240_000 });

  // Unknown places show the not-found page.
  await page.goto(`${serve.url}/#/nope`);
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  const missing = await page.goto(`${serve.url}/nope`);
  assert.equal(missing.status(), 404);
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  await accessibleAtBothWidths(page, 'not found');

  // Clean up: typed delete.
  await page.goto(`${serve.url}/#/`);
  await card(page, 'Web-App').getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByLabel('Type Web-App to confirm').fill('Web-App');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('button', { name: 'Create your first environment' }).waitFor({ timeout: 60_000 });
  assert.deepEqual(errors.filter((e) => !/Failed to fetch/.test(e)), [], 'no script errors');
  await context.close();
});

/** Counts, from now on, the toasts on `page` whose text is `message`. */
async function countToasts(page, message) {
  await page.evaluate((text) => {
    window.__toastsSeen = 0;
    new MutationObserver((changes) => {
      for (const change of changes) {
        for (const node of change.addedNodes) {
          if (node.classList?.contains('toast') && node.textContent.includes(text)) window.__toastsSeen += 1;
        }
      }
    }).observe(document.getElementById('toasts-polite'), { childList: true });
  }, message);
  return () => page.evaluate(() => window.__toastsSeen);
}

test('an idle stop by the server itself shows on open pages within 15 s, announced once', { timeout: 420_000 }, async () => {
  // A minute of the idle timeout lasts 3 s (test-only setting), the sweep
  // runs every second: the 5-minute timeout ends 15 s after the environment
  // came up, by the server's own sweep. There is no push channel: the pages
  // learn it by polling alone.
  const idle = await startServe({
    DEV8_TEST_IDLE_MINUTE_SECONDS: '3',
    DEV8_SWEEP_INTERVAL_SECONDS: '1',
    DEV8_IDLE_TIMEOUT_MINUTES: '5',
  });
  const context = await browser.newContext({ viewport: DESKTOP });
  try {
    const list = await context.newPage();
    const errors = [];
    list.on('pageerror', (e) => errors.push(String(e)));
    await signUp(list, 'idle@example.com', PASSWORD, idle.url);
    await list.getByRole('heading', { name: 'Environments' }).waitFor();
    const bearer = await token('idle@example.com', PASSWORD, idle.url);
    const created = await apiAs(bearer, 'POST', '/environments', { name: 'web-app', baseImage: 'node', preset: 'small' }, idle.url);
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const id = created.body.environment.id;
    assert.equal(created.body.environment.idleTimeoutMinutes, 5);
    const detail = await context.newPage();
    detail.on('pageerror', (e) => errors.push(String(e)));
    await detail.goto(`${idle.url}/#/environments/${id}`);
    await detail.getByRole('heading', { name: 'web-app' }).waitFor();
    try {
      await waitForStatus(list, 'web-app', 'Running', 240_000);
    } catch (error) {
      throw new Error(`${error.message}\n${idle.log().slice(-3000)}`);
    }
    const message = 'web-app stopped for inactivity';
    const seenOnList = await countToasts(list, message);
    const seenOnDetail = await countToasts(detail, message);
    const urls = [list.url(), detail.url()];

    // Nobody touches it: the server's sweep stops it. The moment it does is
    // read from the API, beside the pages.
    const deadline = Date.now() + 120_000;
    let stoppedAt = null;
    while (stoppedAt === null) {
      const env = (await apiAs(bearer, 'GET', `/environments/${id}`, undefined, idle.url)).body.environment;
      if (env.desiredState === 'stopped') {
        assert.equal(env.stopCause, 'idle', 'stopped by the sweep, for inactivity');
        stoppedAt = Date.now();
      } else {
        assert.ok(Date.now() < deadline, `not stopped for inactivity within 120 s: ${JSON.stringify(env)}`);
        await list.waitForTimeout(200);
      }
    }
    await waitForStatus(list, 'web-app', 'Stopped', 15_000);
    await card(list, 'web-app').getByText('Stopped after 5 min without use. Your files are kept.').waitFor({ timeout: 1_000 });
    await detail.getByText('Stopped (for inactivity)').waitFor({ timeout: Math.max(1, 15_000 - (Date.now() - stoppedAt)) });
    assert.ok(Date.now() - stoppedAt < 15_000, `shown after ${Date.now() - stoppedAt} ms`);
    await shots(list, 'live-06-idle-stopped');
    await accessibleAtBothWidths(list, 'list after an idle stop');

    // Announced once on each page, and not again on later polls (one steady
    // poll is at most 10 s apart).
    await list.waitForTimeout(12_000);
    assert.equal(await seenOnList(), 1, 'one announcement on the list');
    assert.equal(await seenOnDetail(), 1, 'one announcement on the detail page');
    // Neither page was reloaded.
    assert.deepEqual([list.url(), detail.url()], urls);
    assert.equal(await list.evaluate(() => window.__toastsSeen !== undefined), true, 'the same document');
    assert.deepEqual(errors, [], 'no script errors');

    assert.equal((await apiAs(bearer, 'DELETE', `/environments/${id}`, undefined, idle.url)).status, 202);
  } finally {
    await context.close();
    await idle.stop();
  }
});
