// The Secrets page end to end in real headless Chromium against the real
// `handler serve`: add a secret (a bad name is refused in the form, a
// reserved one by the server, both on the field), see it listed by name
// only, replace it, delete it behind a confirmation; axe-clean throughout,
// and the value never comes back to the page or the API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { shots, accessibleAtBothWidths, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

const PASSWORD = 'correct-horse-battery';
const VALUE = 'ghp_e2eSecretValue0123456789';

let serve;
let browser;

before(async () => {
  ({ serve, browser } = await startServeAndBrowser());
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});

test('manage a secret: add, list by name, replace, delete with confirmation', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill('sec@example.com');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();

  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('heading', { name: 'Secrets', level: 1 }).waitFor();
  await page.getByText('No secrets yet.').waitFor();
  assert.equal(await page.getByRole('link', { name: 'Secrets', exact: true }).getAttribute('aria-current'), 'page');
  await accessibleAtBothWidths(page, 'empty secrets page');
  await shots(page, 'secrets-01-empty');

  const name = page.getByLabel('Name');
  const value = page.getByLabel('Value');
  const save = page.getByRole('button', { name: 'Save secret' });

  // A malformed name is refused on the field before anything is sent.
  await name.fill('github-token');
  await value.fill(VALUE);
  await save.click();
  await page.getByText('Name must be capital letters, digits and _, not starting with a digit').waitFor();
  assert.equal(await name.getAttribute('aria-invalid'), 'true');
  // A reserved name is refused by the server, on the same field.
  await name.fill('PATH');
  await save.click();
  await page.getByText('Name is reserved for the environment itself').waitFor();
  await accessibleAtBothWidths(page, 'secrets form with a field error');
  await shots(page, 'secrets-02-field-error');

  await name.fill('GITHUB_TOKEN');
  await save.click();
  await page.getByText('GITHUB_TOKEN saved').waitFor();
  const list = page.getByRole('list', { name: 'Your secrets' });
  await list.getByText('GITHUB_TOKEN', { exact: true }).waitFor();
  assert.equal(await value.inputValue(), '', 'the value leaves the form once stored');
  assert.ok(!(await page.content()).includes(VALUE), 'the page never shows the value');
  await accessibleAtBothWidths(page, 'secrets page with a secret');
  await shots(page, 'secrets-03-listed');

  // Replacing keeps one entry.
  await name.fill('GITHUB_TOKEN');
  await value.fill(`${VALUE}-2`);
  await save.click();
  await page.getByText('GITHUB_TOKEN saved').last().waitFor();
  assert.equal(await list.getByRole('listitem').count(), 1);
  const api = await page.request.get(`${serve.url}/api/secrets`);
  const body = await api.text();
  assert.ok(body.includes('GITHUB_TOKEN') && !body.includes(VALUE), 'the API lists the name only');

  // Delete: cancel first (nothing changes), then confirm.
  await list.getByRole('button', { name: 'Delete GITHUB_TOKEN' }).click();
  let dialog = page.getByRole('dialog', { name: 'Delete GITHUB_TOKEN?' });
  await dialog.waitFor();
  await accessibleAtBothWidths(page, 'delete-secret dialog');
  await shots(page, 'secrets-04-confirm-delete');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await list.getByRole('listitem').count(), 1, 'cancel keeps it');
  await list.getByRole('button', { name: 'Delete GITHUB_TOKEN' }).click();
  dialog = page.getByRole('dialog', { name: 'Delete GITHUB_TOKEN?' });
  await dialog.getByRole('button', { name: 'Delete GITHUB_TOKEN' }).click();
  await page.getByText('GITHUB_TOKEN deleted').waitFor();
  await page.getByText('No secrets yet.').waitFor();

  // The account's activity says what happened, by name.
  await page.getByRole('link', { name: 'Account', exact: true }).click();
  const activity = page.getByRole('list', { name: 'Account activity, newest first' });
  await activity.getByText('You deleted the secret GITHUB_TOKEN').waitFor();
  assert.equal(await activity.getByText('You set the secret GITHUB_TOKEN').count(), 2);

  assert.deepEqual(errors, [], 'no script errors');
  await context.close();
});
