// Dev8's activity extension: reports input a person makes (never what the
// workbench or a process does by itself) to the environment's agent over a
// Unix socket only this environment's processes reach, and shows the
// agent's warning before an idle stop. Plain JS, no dependencies.
'use strict';
const vscode = require('vscode');
const http = require('http');

const SOCKET = process.env.DEV8_ACTIVITY_SOCKET;
// At most one report per signal kind this often; the agent pushes once a minute anyway.
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
  if (answer && 'idleStopAt' in answer) idle = answer;
  maybeWarn();
}

function use(signal) {
  const now = Date.now();
  if (now - (lastSent.get(signal) ?? 0) < REPORT_EVERY_MS) return;
  lastSent.set(signal, now);
  call('POST', '/use', { signal }).then(learn);
}

function maybeWarn() {
  if (!idle || !idle.idleStopAt || !idle.idleWarningAt) return;
  const now = Date.now();
  const stop = Date.parse(idle.idleStopAt);
  if (now < Date.parse(idle.idleWarningAt) || now >= stop || warned === idle.idleStopAt) return;
  warned = idle.idleStopAt;
  const minutes = Math.max(1, Math.round((stop - now) / 60000));
  const keep = 'Keep running';
  vscode.window
    .showWarningMessage(`Dev8: this environment stops for inactivity in about ${minutes} minute(s) (${new Date(stop).toLocaleTimeString()}). Your files are kept.`, keep)
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
  on(vscode.window.onDidChangeWindowState, (s) => {
    if (s.focused) use('window-focus');
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
