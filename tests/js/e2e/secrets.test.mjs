// The Secrets page end to end in real headless Chromium against the real
// `handler serve`: add a secret (a bad name is refused in the form, a
// reserved one by the server, both on the field), see it listed by name
// only, replace it, delete it behind a confirmation; axe-clean throughout,
// and the value never comes back to the page or the API. Then in the real
// VS Code workbench (code-server 4.100.3, opened from the dashboard): a
// secret reaches a new terminal and a workspace task (each shows its
// SHA-256, never the value), and a value changed while the environment runs
// reaches a new terminal and the task only after a stop and a start.
// Screenshots in test-artifacts/e2e/secrets-*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  shots, accessibleAtBothWidths, card, waitForStatus, ARTIFACTS, DESKTOP, startServeAndBrowser, stopServeAndBrowser,
} from './browser.mjs';
import { workbenchUp } from '../ide/trust.mjs';
import { newTerminal, runTask, runInTerminal, waitForTerminal } from '../ide/terminal.mjs';

const PASSWORD = 'correct-horse-battery';
const VALUE = 'ghp_e2eSecretValue0123456789';

let serve;
let browser;

async function secretsPage(page) {
  await page.getByRole('link', { name: 'Secrets', exact: true }).click();
  await page.getByRole('heading', { name: 'Secrets', level: 1 }).waitFor();
}

/** A new browser context, signed up as `email`, on the Secrets page; `errors`: the page's script errors. */
async function signedUpOnSecretsPage(email) {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();
  await secretsPage(page);
  return { context, page, errors };
}

/** Adds or replaces a secret on the Secrets page, as a person does. */
async function saveSecret(page, name, value) {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Value').fill(value);
  await page.getByRole('button', { name: 'Save secret' }).click();
  await page.getByText(`${name} saved`).last().waitFor();
}

before(async () => {
  ({ serve, browser } = await startServeAndBrowser());
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});

test('manage a secret: add, list by name, replace, delete with confirmation', { timeout: 120_000 }, async () => {
  const { context, page, errors } = await signedUpOnSecretsPage('sec@example.com');
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
  await saveSecret(page, 'GITHUB_TOKEN', `${VALUE}-2`);
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

/** The SHA-256 of `value` as `sha256sum` prints it. */
const sha256 = (value) => createHash('sha256').update(value).digest('hex');

// What the terminal and the task run: the secret's hash, under a tag that
// tells this run's output from earlier ones. Neither the value nor anything
// made from it is on a command line; the value is never shown.
const HASH_COMMAND = 'printf %s "$E2E_TOKEN" | sha256sum';
const hashLine = (tag) => new RegExp(`^${tag}\\n([0-9a-f]{64})  -$`, 'm');

/** Runs the hash command in a new terminal; returns the hash it shows. */
async function hashInNewTerminal(ide, tag) {
  await newTerminal(ide);
  await runInTerminal(ide, `echo ${tag}; ${HASH_COMMAND}`);
  return hashLine(tag).exec(await waitForTerminal(ide, hashLine(tag)))[1];
}

// The workspace's shell task (written to tasks.json below): the same, tagged.
const TASK = { label: 'secret hash', type: 'shell', command: `echo task-output; ${HASH_COMMAND}` };

/** Runs the workspace's task; returns the hash its terminal shows. */
async function hashFromTask(ide) {
  await runTask(ide, TASK.label);
  return hashLine('task-output').exec(await waitForTerminal(ide, hashLine('task-output')))[1];
}

/**
 * A new terminal and then the task show the hash of `value`; screenshots
 * `secrets-ide-<start>-terminal.png` and `-task.png`.
 */
async function terminalAndTaskSee(ide, value, tag, start) {
  assert.equal(await hashInNewTerminal(ide, tag), sha256(value), `a new terminal (${start})`);
  await ide.screenshot({ path: join(ARTIFACTS, `secrets-ide-${start}-terminal.png`) });
  assert.equal(await hashFromTask(ide), sha256(value), `the task (${start})`);
  await ide.screenshot({ path: join(ARTIFACTS, `secrets-ide-${start}-task.png`) });
}

/** Opens VS Code from the environment's card (a new tab) and waits until it has restored. */
async function openIde(context, page, name) {
  const [ide] = await Promise.all([
    context.waitForEvent('page'),
    card(page, name).getByRole('link', { name: 'Open IDE' }).click(),
  ]);
  await workbenchUp(ide);
  return ide;
}

test('a secret reaches a terminal and a task in VS Code, and a change waits for the next start', { timeout: 600_000 }, async () => {
  const first = `e2e-first-${randomUUID()}`;
  const second = `e2e-second-${randomUUID()}`;
  const { context, page, errors } = await signedUpOnSecretsPage('ide@example.com');
  await saveSecret(page, 'E2E_TOKEN', first);

  await page.getByRole('link', { name: 'Dev8 home' }).click();
  await page.getByRole('button', { name: 'Create your first environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('secret-env');
  await dialog.getByRole('button', { name: 'Create environment' }).click();
  await waitForStatus(page, 'secret-env', 'Running', 120_000);
  await accessibleAtBothWidths(page, 'list with the running environment');
  const id = await card(page, 'secret-env').getAttribute('data-env-id');

  // The workspace's task, put in the home on disk before VS Code opens, and
  // a workspace setting: the terminal draws with xterm's DOM renderer (its
  // text can be read).
  const vscode = join(serve.dataDir, 'environments', id, 'home', 'workspace', '.vscode');
  mkdirSync(vscode, { recursive: true });
  writeFileSync(join(vscode, 'settings.json'), JSON.stringify({ 'terminal.integrated.gpuAcceleration': 'off' }));
  writeFileSync(join(vscode, 'tasks.json'), JSON.stringify({ version: '2.0.0', tasks: [TASK] }, null, 2));

  // On a failure, what the workbench showed is kept as secrets-ide-failed.png.
  let ide;
  try {
    ide = await openIde(context, page, 'secret-env');
    await terminalAndTaskSee(ide, first, 'terminal-1', 'first-start');

    // Changed while the environment runs: a new terminal still has the value
    // of the start.
    await page.bringToFront();
    await secretsPage(page);
    await saveSecret(page, 'E2E_TOKEN', second);
    await ide.bringToFront();
    assert.equal(await hashInNewTerminal(ide, 'terminal-2'), sha256(first), 'a change waits for the next start');
    const shown = await ide.content();
    assert.ok(!shown.includes(first) && !shown.includes(second), 'the workbench never shows a value');
    await ide.close();

    // Stop and start from the dashboard: the next start has the new value.
    await page.getByRole('link', { name: 'Dev8 home' }).click();
    await card(page, 'secret-env').getByRole('button', { name: 'Stop' }).click();
    await waitForStatus(page, 'secret-env', 'Stopped', 90_000);
    await card(page, 'secret-env').getByRole('button', { name: 'Start' }).click();
    await waitForStatus(page, 'secret-env', 'Running', 120_000);
    await accessibleAtBothWidths(page, 'list with the environment started again');
    ide = await openIde(context, page, 'secret-env');
    await terminalAndTaskSee(ide, second, 'terminal-3', 'next-start');
    await ide.close();
  } catch (e) {
    await ide?.screenshot({ path: join(ARTIFACTS, 'secrets-ide-failed.png') }).catch(() => {});
    throw e;
  }

  assert.deepEqual(errors, [], 'no script errors on the dashboard');
  await context.close();
});
