// Turn a recording of tests/js/ide/workbench.mjs into a fast-tier fixture
// (tests/it/fixtures/*.jsonl, replayed by tests/it/activity_replay.rs):
// VS Code's frames only, each as `parts`: base64 strings of recorded bytes,
// and numbers standing for that many bytes cut out. Inside a VS Code message
// longer than 4 KiB (the extension host's start-up data, a large file),
// everything after its first KiB is cut: the classifier reads a message's
// 13-byte header and at most its first 256 bytes, and the replay puts the
// cut length back (as zero bytes), so framing stays exactly as recorded.
//
// Usage: node tests/js/ide/fixture.mjs test-artifacts/idle/<name>.jsonl tests/it/fixtures/<name>.jsonl
import { readFileSync, writeFileSync } from 'node:fs';

const [from, to] = process.argv.slice(2);
const KEEP = 1024;
const out = [];
for (const line of readFileSync(from, 'utf8').split('\n')) {
  if (!line) continue;
  const f = JSON.parse(line);
  if (f.kind !== 'vscode' || !f.binary) continue;
  const bytes = Buffer.from(f.data, 'base64');
  const parts = [];
  let kept = [];
  let at = 0;
  while (at + 13 <= bytes.length) {
    const length = bytes.readUInt32BE(at + 9);
    const end = at + 13 + length;
    if (length > 4 * KEEP) {
      kept.push(bytes.subarray(at, at + 13 + KEEP));
      parts.push(Buffer.concat(kept).toString('base64'), length - KEEP);
      kept = [];
    } else {
      kept.push(bytes.subarray(at, end));
    }
    at = end;
  }
  kept.push(bytes.subarray(at));
  parts.push(Buffer.concat(kept).toString('base64'));
  out.push(JSON.stringify({ t: f.t, ws: f.ws, parts }));
}
writeFileSync(to, out.join('\n') + '\n');
