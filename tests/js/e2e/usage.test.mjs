// Usage and progress in the dashboard, in real headless Chromium against the
// real `handler serve` (real agents measuring real code-server processes):
// the step a create is at instead of a bare spinner, then CPU, memory and
// disk on the card and in the detail view, axe-clean at desktop and phone
// width, screenshots in test-artifacts/e2e/usage-*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { shots, accessibleAtBothWidths, card, DESKTOP, startServeAndBrowser, stopServeAndBrowser } from './browser.mjs';

let serve;
let browser;

before(async () => {
  ({ serve, browser } = await startServeAndBrowser());
});

after(async () => {
  await stopServeAndBrowser(serve, browser);
});




// The steps the control plane names during a create with local compute.
const STEP = /^(Waiting to start|Preparing storage|Starting VS Code|Waiting for VS Code to answer)…$/;

test('progress during a create, then usage on the card and in the detail view', { timeout: 240_000 }, async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(`${serve.url}/#/signup`);
  await page.getByLabel('Email').fill('usage@example.com');
  await page.getByLabel('Password').fill('correct-horse-battery');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Environments' }).waitFor();

  await page.getByRole('button', { name: 'New environment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('measured');
  await dialog.getByLabel('Template').selectOption({ label: 'Node.js' });
  await dialog.getByLabel('Size').selectOption({ index: 0 });
  await dialog.getByRole('button', { name: 'Create environment' }).click();

  // While creating: the step the server names, not only a spinner.
  const measured = card(page, 'measured');
  const progress = measured.locator('.progress-text');
  await progress.filter({ hasText: STEP }).waitFor({ timeout: 60_000 });
  const seen = new Set([await progress.textContent()]);
  await shots(page, 'usage-01-progress');
  await accessibleAtBothWidths(page, 'card while creating');
  while (!(await measured.getByText('Running', { exact: true }).first().isVisible())) {
    if (await progress.isVisible()) seen.add(await progress.textContent());
    await page.waitForTimeout(50);
  }
  for (const text of seen) assert.match(text, STEP);

  // Running: usage arrives (the first report comes ~5 s after VS Code answers; the dashboard looks every 30 s while something runs).
  const usage = measured.locator('.usage-block');
  await usage.waitFor({ state: 'visible', timeout: 60_000 });
  const row = (label) => usage.locator('.usage-row').filter({ has: page.getByText(label, { exact: true }) }).locator('.usage-value');
  assert.match(await row('CPU').textContent(), /^\d+%$/);
  assert.match(await row('Memory').textContent(), /^[\d.]+ (MB|GB) of 2 GB$/);
  assert.match(await row('Disk').textContent(), /^[\d.]+ (B|KB|MB) of 20 GB$/);
  assert.equal(await usage.locator('.usage-warning').isVisible(), false);
  await shots(page, 'usage-02-card');
  await accessibleAtBothWidths(page, 'card with usage');

  // The detail view shows the same figures in its own panel.
  await measured.getByRole('link', { name: 'measured' }).click();
  const panel = page.getByRole('region', { name: 'Usage' });
  await panel.waitFor();
  assert.match(await panel.locator('[data-usage="memory"] .usage-value').textContent(), / of 2 GB$/);
  assert.match(await panel.locator('[data-usage="disk"] .usage-value').textContent(), / of 20 GB$/);
  // Where the home lives, with its limit (local compute: a folder, in place).
  const home = page.locator('.fact').filter({ has: page.locator('dt', { hasText: /^Home$/ }) }).locator('dd');
  assert.equal(await home.locator('.home-mode').textContent(), 'Folder on this machine');
  assert.match(await home.locator('.home-limit').textContent(), /kept in place/);
  await shots(page, 'usage-03-detail');
  await accessibleAtBothWidths(page, 'detail with usage');

  // A nearly full disk is warned about. Filling 18 GB here is not practical,
  // so the test rewrites the usage the browser receives (page.route) to 95%.
  await page.route('**/api/environments', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    for (const env of body.environments ?? []) {
      if (env.usage) env.usage.diskBytes = Math.round(env.usage.diskLimitBytes * 0.95);
    }
    await route.fulfill({ response, json: body });
  });
  await page.reload();
  const warning = page.getByRole('region', { name: 'Usage' }).getByRole('status').filter({ hasText: 'The workspace disk is 95% full' });
  await warning.waitFor({ timeout: 15_000 });
  await shots(page, 'usage-04-disk-warning');
  await accessibleAtBothWidths(page, 'detail with a disk warning');
  await page.unroute('**/api/environments');

  // Stopped: the usage goes away.
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.getByRole('region', { name: 'Usage' }).waitFor({ state: 'hidden', timeout: 60_000 });

  assert.deepEqual(errors, [], 'no page errors');
  await context.close();
});
