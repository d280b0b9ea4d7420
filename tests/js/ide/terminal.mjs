// VS Code's integrated terminal and tasks in the real workbench (code-server
// 4.100.3), as a person uses them, for the tests that drive a workbench tab
// with playwright-core: a command from the palette, a new terminal at its
// prompt, a command typed into it, a task run from "Tasks: Run Task", and
// what the active terminal shows.

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Whether `wait` (a promise) succeeds; on the last of three attempts, its failure. */
const within = (wait, attempt) => wait.then(() => true, (e) => (attempt < 3 ? false : Promise.reject(e)));

/** A shell's prompt, the last thing a terminal shows. */
const PROMPT = /[$#]$/;

/** The terminal the panel shows (a new one, or the one a task runs in). */
const activeTerminal = (page) => page.locator('.terminal-wrapper.active .xterm');

/**
 * Runs the palette command `name` (F1, its name typed, its row clicked).
 * An editor the workbench opens by itself just after it is up (the
 * walkthrough) can take the focus and close the palette, or hold it as F1
 * is pressed: then once more, at most three times.
 */
export async function paletteCommand(page, name) {
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    if (!await within(input.waitFor({ timeout: 10_000 }), attempt)) continue;
    await input.pressSequentially(name, { delay: 10 });
    // Its row, clicked (the focused row can be another one while the list
    // filters); a row's name is the command's, then its key binding if any.
    const row = page.getByRole('option', { name: new RegExp(`^${escapeRegExp(name)}(, |$)`) });
    if (await within(row.waitFor({ timeout: 10_000 }), attempt)) return row.click();
  }
}

/**
 * The text the active terminal shows, row by row. The terminal must draw
 * with xterm's DOM renderer (`terminal.integrated.gpuAcceleration: "off"`):
 * a canvas has no text to read.
 */
export async function terminalText(page) {
  return (await page.locator('.terminal-wrapper.active .xterm-rows > div').allInnerTexts())
    .map((row) => row.replaceAll('\u00a0', ' ').trimEnd())
    .join('\n')
    .trimEnd();
}

/** Waits (bounded) until the active terminal's text matches `pattern`; returns the text. */
export async function waitForTerminal(page, pattern, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const text = await terminalText(page);
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(`the terminal did not show ${pattern} within ${timeout} ms; it shows:\n${text}`);
    }
    await page.waitForTimeout(250);
  }
}

/** Opens a new terminal (Terminal: Create New Terminal) and waits for its shell's prompt. */
export async function newTerminal(page) {
  const before = await page.locator('.terminal-wrapper').count();
  await paletteCommand(page, 'Terminal: Create New Terminal');
  await page.waitForFunction((n) => document.querySelectorAll('.terminal-wrapper').length > n, before, { timeout: 30_000 });
  await activeTerminal(page).waitFor({ timeout: 30_000 });
  // Keys typed before the prompt can be lost.
  await waitForTerminal(page, PROMPT);
}

/**
 * Types `command` at the active terminal's prompt and presses Enter once the
 * prompt's line shows all of it. Keys can be lost while a new shell sets up
 * even after a first prompt showed: then the line is dropped (Ctrl+C) and
 * typed again, at most three times.
 */
export async function runInTerminal(page, command) {
  // The prompt, then the command, at the end of what the terminal shows.
  const typed = new RegExp(`[$#] ${escapeRegExp(command)}$`);
  for (let attempt = 1; ; attempt++) {
    await activeTerminal(page).click();
    await page.keyboard.type(command, { delay: 20 });
    if (await within(waitForTerminal(page, typed, 5_000), attempt)) return page.keyboard.press('Enter');
    await page.keyboard.press('Control+C');
    await waitForTerminal(page, PROMPT);
  }
}

/**
 * Runs the task labelled `label` (Tasks: Run Task, then its row). When VS
 * Code asks which problem matcher to scan the output with (a task that names
 * none), the answer is "Continue without scanning the task output". Returns
 * once the task's terminal is the active one.
 */
export async function runTask(page, label) {
  await paletteCommand(page, 'Tasks: Run Task');
  // The list of tasks replaces the list of commands: a task's row is named
  // "<label>, configured" (or "<label>, recently used").
  await page.getByRole('option', { name: new RegExp(`^${escapeRegExp(label)}, `) }).click({ timeout: 30_000 });
  // VS Code may ask first; the task's terminal says "Executing task" once it runs.
  const scanless = page.getByRole('option', { name: /Continue without scanning the task output/ });
  const deadline = Date.now() + 30_000;
  while (!/Executing task/.test(await terminalText(page))) {
    if (await scanless.count()) await scanless.first().click();
    if (Date.now() > deadline) throw new Error(`the task ${label} did not start within 30 s`);
    await page.waitForTimeout(250);
  }
}
