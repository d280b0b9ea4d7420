// A git server on 127.0.0.1 for the end-to-end tests: git's own
// `git http-backend` (smart HTTP, as git ships it) behind node's http
// server, speaking CGI to it, serving bare repositories made in a
// temporary folder. The Rust tests have the same in tests/it/harness/git_server.rs.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Dev8 Test', GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Dev8 Test', GIT_COMMITTER_EMAIL: 'test@example.com',
};

function git(cwd, ...args) {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();
}

/** One request through `git http-backend` (CGI: request in the environment and on stdin). */
function cgi(root, req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const child = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH, GIT_PROJECT_ROOT: root, GIT_HTTP_EXPORT_ALL: '1',
        REQUEST_METHOD: req.method, PATH_INFO: url.pathname, QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '', CONTENT_LENGTH: String(body.length),
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: req.headers['git-protocol'] ?? '', REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const out = [];
    child.stdout.on('data', (c) => out.push(c));
    child.on('close', () => {
      const raw = Buffer.concat(out);
      let end = raw.indexOf('\r\n\r\n');
      let gap = 4;
      if (end < 0) { end = raw.indexOf('\n\n'); gap = 2; }
      if (end < 0) { res.writeHead(502).end(); return; }
      let status = 200;
      const headers = {};
      for (const line of raw.subarray(0, end).toString().split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
        else headers[name] = value;
      }
      res.writeHead(status, headers).end(raw.subarray(end + gap));
    });
    // The backend may answer and exit before it has read the whole body
    // (git's negotiation ends early): its answer is what counts, and the
    // broken pipe must not become an uncaught error in the test run.
    child.stdin.on('error', () => {});
    child.stdin.end(body);
  });
}

export async function startGitServer() {
  const root = mkdtempSync(join(tmpdir(), 'dev8-git-'));
  const server = createServer((req, res) => cgi(root, req, res));
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    /** A bare repository `<name>.git` with `files` committed on `main`; its URL. */
    repository(name, files) {
      const work = join(root, `${name}-work`);
      mkdirSync(work, { recursive: true });
      git(work, 'init', '-q', '-b', 'main');
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(dirname(join(work, path)), { recursive: true });
        writeFileSync(join(work, path), text);
      }
      git(work, 'add', '-A');
      git(work, 'commit', '-q', '-m', 'first');
      git(root, 'clone', '-q', '--bare', `${name}-work`, `${name}.git`);
      return `${url}/${name}.git`;
    },
    async stop() {
      await new Promise((ok) => server.close(ok));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
