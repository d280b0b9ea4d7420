// Pure formatting helpers for environments: labels, sizes and relative times.

const STATUS_LABELS = {
  creating: 'Creating…',
  starting: 'Starting…',
  running: 'Running',
  stopping: 'Stopping…',
  stopped: 'Stopped',
  error: 'Error',
  deleting: 'Deleting…',
};

/** The badge text for a status ("Running", "Starting…"). */
export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status;
}

/** The badge colour family for a status: running | stopped | busy | error. */
export function statusTone(status) {
  if (status === 'running') return 'running';
  if (status === 'error') return 'error';
  if (status === 'stopped') return 'stopped';
  return 'busy';
}

/** "1 CPU · 2 GB · 20 GB disk". */
export function sizeLabel({ cpuCores, memoryGB, storageGB }) {
  const cpu = `${cpuCores} ${cpuCores === 1 ? 'CPU' : 'CPUs'}`;
  return `${cpu} · ${memoryGB} GB · ${storageGB} GB disk`;
}

/** The template's display name for an environment's baseImage, or the id itself. */
export function templateName(templates, baseImage) {
  return templates?.find((t) => t.id === baseImage)?.displayName ?? baseImage;
}

const UNITS = [
  ['year', 365 * 24 * 3600, 'year'],
  ['month', 30 * 24 * 3600, 'month'],
  ['week', 7 * 24 * 3600, 'week'],
  ['day', 24 * 3600, 'day'],
  ['hour', 3600, 'h'],
  ['minute', 60, 'min'],
];

/**
 * A short relative time: "just now", "5 min ago", "3 h ago", "2 days ago",
 * "in 5 min". Returns "—" for a missing or invalid date.
 */
export function relativeTime(value, now = Date.now()) {
  const then = toMillis(value);
  if (then === null) return '—';
  const seconds = Math.round((now - then) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  for (const [, size, unit] of UNITS) {
    if (abs >= size || unit === 'min') {
      const count = Math.max(1, Math.round(abs / size));
      const plural = count !== 1 && !['h', 'min'].includes(unit) ? 's' : '';
      const text = `${count} ${unit}${plural}`;
      return seconds >= 0 ? `${text} ago` : `in ${text}`;
    }
  }
  return '—';
}

/** The exact local time for a title attribute, e.g. "28 Nov 2026, 10:00:00". */
export function exactTime(value, locale = undefined) {
  const then = toMillis(value);
  if (then === null) return '';
  return new Date(then).toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'medium' });
}

function toMillis(value) {
  if (value === null || value === undefined || value === '') return null;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}
