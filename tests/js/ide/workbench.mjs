// A person at a real VS Code workbench, for the Rust full-tier tests
// (tests/it/idle_workbench.rs): Debian's Chromium driven by playwright-core
// opens an IDE ticket URL, settles Workspace Trust (`trust`: as it opens,
// `restricted`: un-trusted as a person does it — see ./trust.mjs), then does
// what it is told on standard input, one command a line, answering each
// with one line on standard output:
//
//   open <file>        click <file> in the Explorer, then into its editor -> ok
//                      (once its editor is the active one and has the focus)
//   click              click into the active editor's text               -> ok
//   type <text>        type <text> at the cursor of the active editor    -> ok
//                      (once <text> shows in the editor; `ok clicked` when
//                      the focus was elsewhere and a click brought it back
//                      before <text> was typed again)
//   terminal <command> open a new terminal and run <command> in it        -> ok
//   notifications      the notifications (toasts and the notification center) -> notifications <JSON array>
//
// Usage: node workbench.mjs <ticket URL> trust|restricted [<recording.jsonl>]
// With a recording path, every frame the page sends on its WebSockets from
// the start is written there, one JSON line each (see below).
// It prints `ready` once the workbench is up and in the trust state asked
// for, and closes the browser when standard input ends.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { appendFileSync, writeFileSync } from 'node:fs';
import { restrictedItem, trustAnswer, untrust, workbenchUp } from './trust.mjs';

const [url, trust, recordTo] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
// Generous bounds for every action (a loaded 2-core machine is 5-10x
// slower); each still ends as soon as its element is there.
page.setDefaultTimeout(90_000);

// Frames the page sends: one JSON line each with the time (ms since the
// start), the socket's number, whether it is one of VS Code's (its URL has
// a reconnectionToken), and the payload (base64 for binary, text otherwise).
let recording = null;
if (recordTo) {
  writeFileSync(recordTo, '');
  recording = { path: recordTo, start: Date.now() };
}
let sockets = 0;
page.on('websocket', (ws) => {
  const n = sockets++;
  const path = new URL(ws.url()).search.includes('reconnectionToken') ? 'vscode' : 'other';
  ws.on('framesent', (f) => {
    if (!recording) return;
    const binary = typeof f.payload !== 'string';
    const line = {
      t: Date.now() - recording.start,
      ws: n,
      kind: path,
      binary,
      data: binary ? Buffer.from(f.payload).toString('base64') : f.payload,
    };
    appendFileSync(recording.path, JSON.stringify(line) + '\n');
  });
});

await page.goto(url);
await workbenchUp(page);
// The starter project opens trusted (the agent seeds it); VS Code asks about
// a folder it does not trust, once. Restricted Mode: the starter un-trusted,
// then the question answered "No".
let asked = await trustAnswer(page, true).waitFor({ timeout: 5_000 }).then(() => true, () => false);
if (trust === 'restricted') {
  if (!asked) {
    await untrust(page, 'workspace');
    asked = await trustAnswer(page, true).waitFor({ timeout: 30_000 }).then(() => true, () => false);
  }
  if (asked) await trustAnswer(page, false).click();
  await restrictedItem(page).waitFor({ timeout: 30_000 });
} else if (asked) {
  await trustAnswer(page, true).click();
}
console.log('ready');

// The active editor group's text editor: its rendered lines, and whether
// the keyboard focus is inside it.
const activeEditor = '.editor-group-container.active .editor-instance .monaco-editor';
const editorText = () => page.locator(`${activeEditor} .view-lines`).first();
const editorFocused = () =>
  page.evaluate((sel) => !!document.activeElement?.closest(sel), activeEditor);

/** Clicks into the active editor's text (at `position`, else its middle)
 * until it holds the keyboard focus. */
async function focusEditor(position) {
  for (let attempt = 0; attempt < 10; attempt++) {
    await editorText().click({ position });
    const focused = await page
      .waitForFunction((sel) => !!document.activeElement?.closest(sel), activeEditor, { timeout: 5_000 })
      .then(() => true, () => false);
    if (focused) return;
  }
  throw new Error('the editor never took the keyboard focus');
}

/** The editor's rendered text without white space (wrapped lines and
 * VS Code's rendered spaces then compare as typed). */
const bare = (text) => text.replace(/\s+/g, '');
const shows = (text) =>
  page
    .waitForFunction(
      ([sel, want]) => {
        const el = document.querySelector(`${sel} .view-lines`);
        return !!el && el.innerText.replace(/\s+/g, '').includes(want);
      },
      [activeEditor, bare(text)],
      { timeout: 15_000 },
    )
    .then(() => true, () => false);

let clicks = 0;

async function run(line) {
  const [command, ...rest] = line.split(' ');
  const arg = rest.join(' ');
  switch (command) {
    case 'open': {
      await page.getByRole('treeitem', { name: arg }).first().click();
      await page
        .locator('.editor-group-container.active .tab.active', { hasText: arg })
        .waitFor();
      await editorText().waitFor();
      await focusEditor();
      return 'ok';
    }
    case 'click':
      // Every other click at the start of the first line, so each one moves
      // the cursor (a click where it already is changes no selection).
      clicks++;
      await focusEditor(clicks % 2 ? { x: 2, y: 4 } : undefined);
      return 'ok';
    case 'type': {
      // A person sees what they type: keys that went elsewhere (the focus
      // taken by a late part of the workbench) are typed again, after a
      // click back into the editor; the answer then says so (`ok clicked`),
      // since a click is input of its own.
      let clicked = false;
      for (let attempt = 0; attempt < 3; attempt++) {
        if (!(await editorFocused())) {
          await focusEditor();
          clicked = true;
        }
        await page.keyboard.type(arg, { delay: 30 });
        if (await shows(arg)) return clicked ? 'ok clicked' : 'ok';
      }
      return `error the typed text never showed in the editor: ${JSON.stringify(arg)}`;
    }
    case 'terminal': {
      await page.keyboard.press('F1');
      await page.keyboard.type('Terminal: Create New Terminal', { delay: 10 });
      await page.keyboard.press('Enter');
      const terminal = page.locator('.terminal-wrapper.active .xterm');
      await terminal.waitFor();
      // Type only once the shell shows its prompt (keys sent earlier can be lost).
      const rows = page.locator('.terminal-wrapper.active .xterm-rows');
      for (let i = 0; i < 100 && !/[$#]\s*$/m.test((await rows.allInnerTexts()).join('\n')); i++) {
        await page.waitForTimeout(200);
      }
      await terminal.click();
      await page.keyboard.type(arg, { delay: 20 });
      await page.keyboard.press('Enter');
      return 'ok';
    }
    case 'notifications': {
      // Toasts hide after a while; the notification center keeps them all.
      await page.keyboard.press('F1');
      await page.keyboard.type('Notifications: Show Notifications', { delay: 10 });
      await page.keyboard.press('Enter');
      await page.locator('.notifications-center').waitFor({ timeout: 10_000 }).catch(() => {});
      const texts = await page.locator('.notification-toast, .notifications-center .monaco-list-row').allInnerTexts();
      return `notifications ${JSON.stringify(texts)}`;
    }
    default:
      return `error unknown command ${command}`;
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  try {
    console.log(await run(line.trim()));
  } catch (e) {
    console.log(`error ${String(e.message).split('\n')[0]}`);
  }
}
await browser.close();
