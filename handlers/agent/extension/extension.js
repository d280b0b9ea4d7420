// Dev8's activity extension: reports input a person makes (never what the
// workbench or a process does by itself) to the environment's agent over a
// Unix socket only this environment's processes reach, and shows the
// agent's warning before an idle stop. Plain JS, no dependencies.
'use strict';
const vscode = require('vscode');
const http = require('http');

const SOCKET = process.env.DEV8_ACTIVITY_SOCKET;
// At most one report per kind of input this often; the agent pushes once a minute anyway.
const REPORT_EVERY_MS = 5000;
const POLL_EVERY_MS = 30000;

function call(method, path, body) {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: SOCKET, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        try { resolve(JSON.parse(text)); } catch { resolve(null); }
      });
    });
    req.on('error', () => resolve(null));
    req.setTimeout(5000, () => req.destroy());
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

let idle = null;
let warned = null;
const lastSent = new Map();

function learn(answer) {
  if (answer && 'stopInSeconds' in answer) idle = { ...answer, at: Date.now() };
  maybeWarn();
}

const pending = new Set();

// Report at once, or (inside the interval) once at its end: input is never dropped.
function use(signal) {
  const wait = (lastSent.get(signal) ?? 0) + REPORT_EVERY_MS - Date.now();
  if (wait > 0) {
    if (!pending.has(signal)) {
      pending.add(signal);
      setTimeout(() => { pending.delete(signal); use(signal); }, wait);
    }
    return;
  }
  lastSent.set(signal, Date.now());
  call('POST', '/use', { signal }).then(learn);
}

// The agent gives times as seconds from now by the control plane's clock,
// so this machine's clock does not matter.
function maybeWarn() {
  if (!idle || idle.stopInSeconds == null || idle.warnInSeconds == null) return;
  const passed = (Date.now() - idle.at) / 1000;
  const stopIn = idle.stopInSeconds - passed;
  if (idle.warnInSeconds - passed > 0 || stopIn <= 0 || warned === idle.idleStopAt) return;
  warned = idle.idleStopAt;
  const minutes = Math.max(1, Math.round(stopIn / 60));
  const keep = 'Keep running';
  vscode.window
    .showWarningMessage(`Dev8: this environment stops for inactivity in about ${minutes} minute(s) unless you use it. Your files are kept.`, keep)
    .then((choice) => { if (choice === keep) use('keep-running'); });
}

function activate(context) {
  if (!SOCKET) return;
  const on = (event, handler) => context.subscriptions.push(event(handler));
  // A selection change with a kind comes from the keyboard, the mouse or a
  // command; edits that arrive from disk or from extensions carry none.
  on(vscode.window.onDidChangeTextEditorSelection, (e) => {
    if (e.kind !== undefined) use('editor-input');
  });
  // Only a change from unfocused to focused: the event also fires when the
  // window turns inactive after a while without input, still focused.
  let focused = vscode.window.state.focused;
  on(vscode.window.onDidChangeWindowState, (s) => {
    if (s.focused && !focused) use('window-focus');
    focused = s.focused;
  });
  on(vscode.window.onDidChangeActiveTextEditor, (e) => {
    if (e && vscode.window.state.focused) use('open-editor');
  });
  if (vscode.window.onDidStartTerminalShellExecution) {
    on(vscode.window.onDidStartTerminalShellExecution, () => use('terminal-command'));
  }
  on(vscode.tasks.onDidStartTask, () => use('task'));
  on(vscode.debug.onDidStartDebugSession, () => use('debug'));
  const poll = () => call('GET', '/idle').then(learn);
  poll();
  const timer = setInterval(poll, POLL_EVERY_MS);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
}

module.exports = { activate, deactivate() {} };
