// Password sign-up under an email-domain allowlist, end to end in real
// headless Chromium against the real `handler serve` without SMTP (so the
// confirmation mail is written into serve's log): the "check your mail"
// page, a new link, the link's landing page, and the dashboard afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { shots, accessibleAtBothWidths, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

const PASSWORD = 'correct-horse-battery';
const EMAIL = 'kim@corp.example';

let serve;
let browser;

before(async () => {
  ({ serve, browser } = await startServeAndBrowser({ DEV8_SIGNUP_DOMAINS: 'corp.example' }));
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});

/** The newest confirmation link serve logged for `email`. */
function lastLink(email) {
  const links = [...serve.log().matchAll(/(http:\/\/127\.0\.0\.1:\d+\/#\/confirm\?token=[A-Za-z0-9_.-]+)/g)].map((m) => m[1]);
  assert.ok(serve.log().includes(email), 'the mail is logged for its address');
  assert.ok(links.length > 0, 'a confirmation link is in the log');
  return links.at(-1);
}

test('check your mail, a new link, the link confirms once', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Check your mail' }).waitFor();
  await page.locator('.auth-card strong', { hasText: EMAIL }).waitFor();
  // Nothing else is reachable: the account page shows the same.
  await page.goto(`${serve.url}/#/account`);
  await page.getByRole('heading', { name: 'Check your mail' }).waitFor();
  await accessibleAtBothWidths(page, 'check your mail');
  await shots(page, 'confirm-01-check-mail');

  const first = lastLink(EMAIL);
  await page.getByRole('button', { name: 'Send a new link' }).click();
  await page.getByText(`A new link is on its way to ${EMAIL}.`).waitFor();
  const second = lastLink(EMAIL);
  assert.notEqual(first, second, 'a new link');

  // The replaced link does nothing.
  await page.goto(first);
  await page.getByText(/This link was used already, replaced by a newer one, or has expired/).waitFor();

  await page.goto(second);
  await page.getByText('Your email address is confirmed.').waitFor();
  await accessibleAtBothWidths(page, 'link confirmed');
  await shots(page, 'confirm-02-confirmed');
  await page.getByRole('link', { name: 'Continue to Dev8' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();

  // Once: the same link again is refused.
  await page.goto(second);
  await page.getByText(/This link was used already/).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});
