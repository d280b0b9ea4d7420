import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesLabel, progressText, share, usageFigures } from '../js/usage.js';

test('byte labels', () => {
  assert.equal(bytesLabel(0), '0 B');
  assert.equal(bytesLabel(512), '512 B');
  assert.equal(bytesLabel(1536), '1.5 KB');
  assert.equal(bytesLabel(340 * 1024 * 1024), '340 MB');
  assert.equal(bytesLabel(2 * 1024 ** 3), '2 GB');
  assert.equal(bytesLabel(1.25 * 1024 ** 3), '1.3 GB');
  assert.equal(bytesLabel(-1), '—');
  assert.equal(bytesLabel(undefined), '—');
});

test('shares are clamped and safe without a limit', () => {
  assert.equal(share(5, 10), 0.5);
  assert.equal(share(20, 10), 1);
  assert.equal(share(5, 0), 0);
});

test('usage figures and the disk warning above 90%', () => {
  assert.equal(usageFigures(null), null);
  const gb = 1024 ** 3;
  const ok = usageFigures({ cpuPercent: 12.4, memoryBytes: 340 * 1024 ** 2, memoryLimitBytes: 2 * gb, diskBytes: 1.2 * gb, diskLimitBytes: 20 * gb });
  assert.equal(ok.cpu, '12%');
  assert.equal(ok.memory, '340 MB of 2 GB');
  assert.equal(ok.disk, '1.2 GB of 20 GB');
  assert.equal(ok.diskWarning, false);
  const full = usageFigures({ cpuPercent: 0, memoryBytes: 0, memoryLimitBytes: gb, diskBytes: 18.5 * gb, diskLimitBytes: 20 * gb });
  assert.equal(full.diskWarning, true);
  assert.equal(full.diskPercent, 93);
  assert.equal(usageFigures({ cpuPercent: 0, memoryBytes: 0, memoryLimitBytes: gb, diskBytes: 18 * gb, diskLimitBytes: 20 * gb }).diskWarning, false, 'exactly 90% is no warning');
});

test('progress text names the step', () => {
  assert.equal(progressText(null), null);
  assert.equal(progressText({ step: 'starting VS Code', at: 'x' }), 'Starting VS Code…');
  assert.equal(progressText({ step: 'pulling the image', detail: 'node:1' }), 'Pulling the image (node:1)…');
});

test('the home mode is stated with its limit', async () => {
  const { homeModeText } = await import('../js/usage.js');
  const snap = homeModeText({ homeMode: 'snapshot', snapshotIntervalMinutes: 10 });
  assert.equal(snap.label, 'Local disk, saved as snapshots');
  assert.equal(snap.limit, 'Files are saved every 10 minutes and when it stops; a crash loses at most 10 minutes of work.');
  assert.match(homeModeText({ homeMode: 'snapshot', snapshotIntervalMinutes: 1 }).limit, /every 1 minute and/);
  const net = homeModeText({ homeMode: 'share' });
  assert.equal(net.label, 'Network share');
  assert.match(net.limit, /no symlinks or hard links/);
  assert.deepEqual(homeModeText({}), net, 'a record without a mode is a share');
  assert.deepEqual(homeModeText({ homeMode: 'share' }, 'network'), net);
  const local = homeModeText({ homeMode: 'share' }, 'folder');
  assert.equal(local.label, 'Folder on this machine');
  assert.doesNotMatch(local.limit, /symlinks/, 'a local folder has no SMB limits');
  assert.equal(homeModeText({ homeMode: 'snapshot', snapshotIntervalMinutes: 10 }, 'folder').label, 'Local disk, saved as snapshots');
});

test('the last snapshot is measured against the storage and its warning kept', async () => {
  const { snapshotFigures } = await import('../js/usage.js');
  assert.equal(snapshotFigures({ usage: { cpuPercent: 1 } }), null);
  const gb = 1024 ** 3;
  const f = snapshotFigures({ storageGB: 20, usage: { snapshot: { lastAt: '2026-12-02T08:00:00Z', storedBytes: 17 * gb, warning: 'the last snapshot took 17.0 GB of this environment\'s 20.0 GB of storage' } } });
  assert.equal(f.size, '17 GB of 20 GB');
  assert.equal(f.lastAt, '2026-12-02T08:00:00Z');
  assert.match(f.warning, /17.0 GB/);
  assert.equal(snapshotFigures({ storageGB: 20, usage: { snapshot: { lastAt: null, storedBytes: null, warning: null } } }).size, null);
});
