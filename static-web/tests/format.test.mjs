import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relativeTime, sizeLabel, statusLabel, statusTone, templateName } from '../js/format.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const ago = (seconds) => new Date(NOW - seconds * 1000).toISOString();

test('relative times', () => {
  assert.equal(relativeTime(ago(10), NOW), 'just now');
  assert.equal(relativeTime(ago(60), NOW), '1 min ago');
  assert.equal(relativeTime(ago(5 * 60), NOW), '5 min ago');
  assert.equal(relativeTime(ago(3 * 3600), NOW), '3 h ago');
  assert.equal(relativeTime(ago(24 * 3600), NOW), '1 day ago');
  assert.equal(relativeTime(ago(3 * 24 * 3600), NOW), '3 days ago');
  assert.equal(relativeTime(new Date(NOW + 5 * 60_000).toISOString(), NOW), 'in 5 min');
  assert.equal(relativeTime(null, NOW), '—');
  assert.equal(relativeTime('not a date', NOW), '—');
});

test('size labels', () => {
  assert.equal(sizeLabel({ cpuCores: 1, memoryGB: 2, storageGB: 20 }), '1 CPU · 2 GB · 20 GB disk');
  assert.equal(sizeLabel({ cpuCores: 4, memoryGB: 8, storageGB: 100 }), '4 CPUs · 8 GB · 100 GB disk');
});

test('status labels and tones', () => {
  assert.equal(statusLabel('running'), 'Running');
  assert.equal(statusLabel('starting'), 'Starting…');
  assert.equal(statusTone('creating'), 'busy');
  assert.equal(statusTone('stopped'), 'stopped');
  assert.equal(statusTone('error'), 'error');
});

test('template names fall back to the id', () => {
  const templates = [{ id: 'node', displayName: 'Node.js' }];
  assert.equal(templateName(templates, 'node'), 'Node.js');
  assert.equal(templateName(templates, 'rust'), 'rust');
});
