// Workspace Trust in the real VS Code workbench (code-server 4.100.3), as a
// person meets it, for the tests that drive a workbench tab with
// playwright-core: the Restricted Mode indicator, VS Code's start-up
// question, the trust editor, un-trusting a folder.

/** The status bar's Restricted Mode entry (only there in Restricted Mode). */
export const restrictedItem = (page) => page.locator('[id="status.workspaceTrust"]');

/** A button of VS Code's "Do you trust the authors…?" question. */
export const trustAnswer = (page, yes) =>
  page.getByRole('button', { name: yes ? 'Yes, I trust the authors' : "No, I don't trust the authors" });

/** Waits until the workbench has restored (its status bar's own entries are up). */
export async function workbenchUp(page) {
  await page.locator('.monaco-workbench').waitFor({ timeout: 120_000 });
  await page.locator('[id="status.problems"]').waitFor({ timeout: 60_000 });
}

/** Opens the Workspace Trust editor through the command palette. */
export async function trustEditor(page) {
  // Typed only into the palette (a restored trust editor's button may hold
  // the focus before it opens).
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

/**
 * Un-trusts the open folder (`~/<name>`) as a person does in the web
 * workbench — a trusted remote folder has no "Don't Trust" button, it is
 * deleted from the trusted list — and loads the page again once the
 * workbench has reloaded itself in Restricted Mode.
 */
export async function untrust(page, name) {
  const editor = await trustEditor(page);
  const row = editor.getByRole('listitem', { name: new RegExp(`^~/${name} on .*, trusted$`) });
  await row.hover();
  await row.getByRole('button', { name: 'Delete Path' }).click();
  await restrictedItem(page).waitFor({ timeout: 30_000 });
  await page.waitForLoadState('load');
  await page.waitForTimeout(3_000);
  await page.goto(page.url());
  await workbenchUp(page);
}
