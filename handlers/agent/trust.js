// Dev8: the starter project opens trusted (Workspace Trust), once per browser.
//
// The agent serves this module in place of the workbench's main module
// (`<script type="module" data-dev8-main="…/workbench.js">`). Before the
// workbench starts, it adds the starter folder to the trusted-folder list
// code-server 4.100.3's web workbench keeps in application storage (the
// browser's IndexedDB `vscode-web-state-db-global`, object store
// `ItemTable`, key `content.trust.model.key`, a JSON string
// `{"uriTrustInfo":[{"uri":<URI components>,"trusted":true}]}`), merged with
// what is stored; then it imports the workbench. It seeds once per browser
// (the marker in localStorage): a person who later un-trusts the folder is
// never overridden. Anything unexpected (another code-server, IndexedDB
// unavailable, a stored value it cannot read) leaves storage as it is: the
// folder then opens in Restricted Mode, and the workbench starts all the same.
const STARTER = "__DEV8_STARTER__";
const CODE_SERVER = '4.100.3';
const DB = 'vscode-web-state-db-global';
const STORE = 'ItemTable';
const KEY = 'content.trust.model.key';
const SEEDED = 'dev8.trust.seeded';
/** The longest the workbench waits for the seed before starting anyway. */
const PATIENCE_MS = 5000;

function config() {
  const meta = document.getElementById('vscode-workbench-web-configuration');
  return JSON.parse(meta.getAttribute('data-settings'));
}

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB);
    // As the workbench itself creates it when it is missing.
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('IndexedDB blocked'));
  });
}

/** The stored model with the starter added, or null to leave it as it is. */
function merged(stored, starter) {
  let model = { uriTrustInfo: [] };
  if (stored !== undefined) {
    if (typeof stored !== 'string') return null;
    try {
      model = JSON.parse(stored);
    } catch {
      return null;
    }
    if (model === null || typeof model !== 'object' || Array.isArray(model)) return null;
    if (model.uriTrustInfo === undefined) model.uriTrustInfo = [];
    if (!Array.isArray(model.uriTrustInfo)) return null;
  }
  const same = (e) => e && e.uri && e.uri.scheme === starter.scheme
    && e.uri.authority === starter.authority
    && (e.uri.path === starter.path || e.uri.path === `${starter.path}/`);
  // Already decided in this browser: never changed.
  if (model.uriTrustInfo.some(same)) return null;
  model.uriTrustInfo.push({ uri: starter, trusted: true });
  return JSON.stringify(model);
}

async function seed(deadline) {
  const settings = config();
  if (settings.productConfiguration?.codeServerVersion !== CODE_SERVER) {
    console.warn('Dev8: not code-server', CODE_SERVER, '- the starter project is not pre-trusted');
    return;
  }
  // The workbench names its remote by the page's host (code-server's
  // embedder: `remoteAuthority: location.host`), and its folder
  // `vscode-remote://<host><path>`.
  const starter = { $mid: 1, path: STARTER, scheme: 'vscode-remote', authority: location.host };
  const marker = `${starter.authority}${starter.path}`;
  if (localStorage.getItem(SEEDED) === marker) return;
  const db = await openDb();
  try {
    if (!db.objectStoreNames.contains(STORE)) return;
    await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, 'readwrite');
      const store = tx.objectStore(STORE);
      const read = store.get(KEY);
      read.onsuccess = () => {
        const value = merged(read.result, starter);
        if (value !== null) store.put(value, KEY);
      };
      // Too late: nothing is written behind the workbench's back.
      deadline.then(() => { try { tx.abort(); } catch { /* already done */ } });
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('aborted'));
    });
  } finally {
    db.close();
  }
  localStorage.setItem(SEEDED, marker);
}

// The workbench's own module, as the page named it (else where the page's
// first script says its files are).
const main = document.querySelector('script[data-dev8-main]')?.getAttribute('data-dev8-main')
  ?? `${globalThis._VSCODE_FILE_ROOT}vs/code/browser/workbench/workbench.js`;
const deadline = new Promise((resolve) => { setTimeout(resolve, PATIENCE_MS); });
try {
  await Promise.race([seed(deadline), deadline]);
} catch (e) {
  console.warn('Dev8: the starter project is not pre-trusted:', e);
}
await import(new URL(main, document.baseURI).href);
