import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeRecord } from '../js/history.js';
import { auditQuery } from '../js/api.js';

const rec = (action, fields = {}) => ({ id: 'r', at: '2026-11-28T10:00:00Z', action, outcome: 'success', ...fields });

test('an environment’s history in sentences', () => {
  assert.equal(describeRecord(rec('environment.create')).text, 'You created this environment');
  assert.equal(describeRecord(rec('environment.start')).text, 'You started this environment');
  assert.equal(describeRecord(rec('environment.stop')).text, 'You stopped this environment');
  const idle = describeRecord(rec('environment.idle_stop', { idleTimeoutMinutes: 45 }));
  assert.deepEqual(idle, { text: 'It was stopped for inactivity after 45 minutes without use', tone: 'info' });
  // Records written before the field existed: the detail still says it.
  assert.match(describeRecord(rec('environment.idle_stop', { detail: 'idle for 1 minutes' })).text, /after 1 minute without use$/);
  assert.equal(describeRecord(rec('environment.idle_stop')).text, 'It was stopped for inactivity');
});

test('failures say the cause and what to do', () => {
  const start = describeRecord(rec('job.failure', { outcome: 'failure', reason: 'Timed out: still creating after 16 minutes', desiredState: 'running' }));
  assert.equal(start.tone, 'error');
  assert.equal(start.text, 'It couldn’t be started');
  assert.equal(start.cause, 'Timed out: still creating after 16 minutes');
  assert.match(start.advice, /Press Start to try again/);
  const stop = describeRecord(rec('job.failure', { outcome: 'failure', reason: 'x', desiredState: 'stopped' }));
  assert.match(stop.advice, /Press Stop/);
  const del = describeRecord(rec('job.failure', { outcome: 'failure', reason: 'x', desiredState: 'deleted' }));
  assert.match(del.advice, /retrying the deletion by itself/);
  // An older record without the fields still reads as a problem with its note.
  const old = describeRecord(rec('job.failure', { outcome: 'failure', detail: 'failed after 5 attempts' }));
  assert.equal(old.cause, 'failed after 5 attempts');
  assert.ok(old.advice);
});

test('a failed clone reads as a start without the repository, with git’s words', () => {
  const r = describeRecord(rec('environment.clone_failed', { outcome: 'failure', detail: 'fatal: repository not found' }), { subject: 'app' });
  assert.equal(r.text, 'app started without its repository: the clone failed');
  assert.equal(r.tone, 'error');
  assert.equal(r.cause, 'fatal: repository not found');
  assert.match(r.advice, /clone it yourself/);
});

test('the account log names environments and providers', () => {
  const providers = [{ id: 'oidc', name: 'Test SSO' }];
  assert.equal(describeRecord(rec('environment.stop'), { subject: 'hello-node' }).text, 'You stopped hello-node');
  assert.equal(describeRecord(rec('job.failure', { outcome: 'failure', desiredState: 'running', reason: 'r' }), { subject: 'hello-node' }).text, 'hello-node couldn’t be started');
  assert.equal(describeRecord(rec('environment.idle_stop', { idleTimeoutMinutes: 30 }), { subject: 'app' }).text, 'app was stopped for inactivity after 30 minutes without use');
  assert.equal(describeRecord(rec('identity.link', { detail: 'oidc: explicit' }), { providers }).text, 'You linked Test SSO as a way to sign in');
  assert.equal(describeRecord(rec('identity.unlink', { detail: 'oidc' }), { providers }).text, 'You unlinked Test SSO');
  assert.equal(describeRecord(rec('secret.set', { detail: 'GITHUB_TOKEN' })).text, 'You set the secret GITHUB_TOKEN');
  assert.equal(describeRecord(rec('secret.deleted', { detail: 'NPM_TOKEN' })).text, 'You deleted the secret NPM_TOKEN');
  assert.equal(describeRecord(rec('settings.dotfiles', { detail: 'https://github.com/ada/dotfiles' })).text, 'You set your dotfiles repository to https://github.com/ada/dotfiles');
  assert.equal(describeRecord(rec('settings.dotfiles')).text, 'You removed your dotfiles repository');
  assert.equal(describeRecord(rec('auth.signin', { detail: 'password' })).text, 'You signed in with your password');
  assert.equal(describeRecord(rec('auth.confirm', { detail: 'mailed link' })).text, 'You confirmed your email address');
  assert.equal(describeRecord(rec('auth.signin', { detail: 'oidc' }), { providers }).text, 'You signed in with Test SSO');
  const failed = describeRecord(rec('auth.signin', { outcome: 'failure', detail: 'password: wrong email or password' }));
  assert.equal(failed.tone, 'error');
  assert.equal(describeRecord(rec('something.new')).text, 'something.new');
});

test('audit page queries carry only what is given', () => {
  assert.equal(auditQuery({}), '');
  assert.equal(auditQuery({ environmentId: '01j', before: 'a+b', limit: 10 }), 'environmentId=01j&before=a%2Bb&limit=10');
});

test('password changes in the account log', () => {
  assert.match(describeRecord(rec('auth.password')).text, /You changed your password/);
  const failed = describeRecord(rec('auth.password', { outcome: 'failure' }));
  assert.equal(failed.tone, 'error');
  assert.match(failed.text, /current password was wrong/);
});

test('a stop without its final snapshot says what may be missing', () => {
  const r = describeRecord(rec('environment.final_snapshot_missed', { outcome: 'failure', detail: 'The final snapshot did not finish within 5 minutes; stopped anyway. Changes since the last periodic snapshot may be lost' }), { subject: 'app' });
  assert.equal(r.text, 'app was stopped without its final snapshot');
  assert.equal(r.tone, 'error');
  assert.match(r.cause, /within 5 minutes/);
  assert.match(r.advice, /last snapshot/);
});
