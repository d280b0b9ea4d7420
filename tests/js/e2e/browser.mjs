// Debian's Chromium driven by playwright-core (no browser download), plus
// an axe-core scan and screenshots kept as test artifacts.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startServe } from './serve.mjs';

export const ARTIFACTS = join(ROOT, 'test-artifacts', 'e2e');
mkdirSync(ARTIFACTS, { recursive: true });

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** `serve` with `settings` (see serve.mjs) and a browser: every test file's start. */
export async function startServeAndBrowser(settings) {
  const serve = await startServe(settings);
  return { serve, browser: await launch() };
}

/** The end of every test file: the browser, then `serve` (either may be missing). */
export async function stopServeAndBrowser(serve, browser) {
  await browser?.close();
  await serve?.stop();
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Screenshot `page` at desktop and phone width as `<name>-desktop.png` / `-phone.png`. */
export async function shots(page, name) {
  const size = page.viewportSize();
  for (const [label, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    await page.waitForTimeout(150);
    await page.screenshot({ path: join(ARTIFACTS, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(size);
}

/** Waits for finite animations (a toast fading in) to end. */
export async function settled(page) {
  await page.evaluate(() => Promise.all(document.getAnimations()
    .filter((a) => a.effect?.getTiming().iterations !== Infinity)
    .map((a) => a.finished.catch(() => {}))));
}

/**
 * Serious and critical axe-core violations on the page once its finite
 * animations have ended (axe judges colours as they are at that moment: a
 * toast caught mid-fade-in fails the contrast rule).
 */
export async function seriousViolations(page) {
  await settled(page);
  const result = await new AxeBuilder({ page }).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** No serious axe-core violations at desktop and at phone width. */
export async function accessibleAtBothWidths(page, what) {
  const size = page.viewportSize();
  for (const [label, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    assert.deepEqual(await seriousViolations(page), [], `${what} (${label})`);
  }
  await page.setViewportSize(size);
}

/** The card of the environment named `name` in the list. */
export function card(page, name) {
  return page.locator('article[data-env-id]').filter({ has: page.getByRole('heading', { name }) });
}

/** Waits until that card shows `status`. */
export async function waitForStatus(page, name, status, timeout = 90_000) {
  await card(page, name).getByText(status, { exact: true }).first().waitFor({ timeout });
}
