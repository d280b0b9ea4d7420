// Pure helpers for what an environment uses and the step it is at: the
// human-readable figures the card and the detail view show.

/** Disk use above this share of the workspace's size gets a warning. */
export const DISK_WARNING_SHARE = 0.9;

/** "512 B", "340 MB", "1.2 GB" (powers of 1024, one decimal below 10). */
export function bytesLabel(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 || value >= 10 ? Math.round(value) : Math.round(value * 10) / 10;
  return `${shown} ${units[unit]}`;
}

/** The share `used / limit` in 0..1 (0 for a missing limit). */
export function share(used, limit) {
  if (!Number.isFinite(used) || !Number.isFinite(limit) || limit <= 0) return 0;
  return Math.min(1, Math.max(0, used / limit));
}

/**
 * The figures for `env.usage` (null when there is nothing to show):
 * cpu "12%", memory "340 MB of 2 GB", disk "1.2 GB of 20 GB", the disk
 * share and whether it deserves a warning.
 */
export function usageFigures(usage) {
  if (!usage) return null;
  const diskShare = share(usage.diskBytes, usage.diskLimitBytes);
  return {
    cpu: `${Math.round(usage.cpuPercent ?? 0)}%`,
    cpuShare: share(usage.cpuPercent ?? 0, 100),
    memory: `${bytesLabel(usage.memoryBytes)} of ${bytesLabel(usage.memoryLimitBytes)}`,
    memoryShare: share(usage.memoryBytes, usage.memoryLimitBytes),
    disk: `${bytesLabel(usage.diskBytes)} of ${bytesLabel(usage.diskLimitBytes)}`,
    diskShare,
    diskWarning: diskShare > DISK_WARNING_SHARE,
    diskPercent: Math.round(diskShare * 100),
  };
}

/** "Pulling the image (node:1)…" for `env.progress`, or null. */
export function progressText(progress) {
  if (!progress?.step) return null;
  const step = progress.step.charAt(0).toUpperCase() + progress.step.slice(1);
  return progress.detail ? `${step} (${progress.detail})…` : `${step}…`;
}

/**
 * Where the home lives and what that means, for `env.homeMode`:
 * `snapshot` (the compute's own disk, saved every `snapshotIntervalMinutes`)
 * or `share`, which is a network share on ACI (`shareHome` `network`, with
 * SMB's limits) and a folder on the machine locally (`folder`). Records from
 * before home modes carry no mode: they are shares.
 */
export function homeModeText(env, shareHome = 'network') {
  if (env?.homeMode === 'snapshot') {
    const n = env.snapshotIntervalMinutes ?? 10;
    const minutes = n === 1 ? '1 minute' : `${n} minutes`;
    return {
      label: 'Local disk, saved as snapshots',
      limit: `Files are saved every ${minutes} and when it stops; a crash loses at most ${minutes} of work.`,
    };
  }
  if (shareHome === 'folder') {
    return {
      label: 'Folder on this machine',
      limit: 'Files are kept in place as you save them, across stops and starts.',
    };
  }
  return {
    label: 'Network share',
    limit: 'Files are on a network share: no symlinks or hard links, file locks are unreliable (SQLite may say “database is locked”), and many small files are slow. See images/README.md for the workarounds.',
  };
}

/**
 * The last snapshot against the environment's storage (snapshot mode):
 * "3.1 GB of 20 GB" and the agent's warning (a snapshot near or over
 * `storageGB` fails, and a crash then loses everything since the last one),
 * or null when there is no snapshot report.
 */
export function snapshotFigures(env) {
  const s = env?.usage?.snapshot;
  if (!s) return null;
  const limit = (env.storageGB ?? 0) * 1024 ** 3;
  const stored = Number.isFinite(s.storedBytes) ? s.storedBytes : null;
  return {
    lastAt: s.lastAt ?? null,
    size: stored === null ? null : `${bytesLabel(stored)} of ${bytesLabel(limit)}`,
    warning: s.warning ?? null,
  };
}
