import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRoute, hrefFor, hashQuery, isDashboardPath } from '../js/router.js';

test('hash routes', () => {
  assert.deepEqual(parseRoute(''), { name: 'list' });
  assert.deepEqual(parseRoute('#/'), { name: 'list' });
  assert.deepEqual(parseRoute('#/signup'), { name: 'signup' });
  assert.deepEqual(parseRoute('#/account'), { name: 'account' });
  assert.deepEqual(parseRoute('#/account?linked=oidc'), { name: 'account' });
  assert.deepEqual(parseRoute('#/confirm?token=a.b.c'), { name: 'confirm' });
  assert.equal(hashQuery('#/confirm?token=a.b.c').get('token'), 'a.b.c');
  assert.equal(hrefFor({ name: 'account' }), '#/account');
  assert.deepEqual(parseRoute('#/secrets'), { name: 'secrets' });
  assert.equal(hrefFor({ name: 'secrets' }), '#/secrets');
  assert.deepEqual(parseRoute('#/environments/01JABC'), { name: 'detail', id: '01JABC' });
  assert.deepEqual(parseRoute('#/nope/x'), { name: 'notFound' });
  assert.equal(parseRoute('#main'), null);
  assert.equal(hrefFor({ name: 'detail', id: 'a b' }), '#/environments/a%20b');
});

test('provider results in the hash', () => {
  assert.deepEqual(parseRoute('#/signin?error=access_denied'), { name: 'signin' });
  assert.equal(hashQuery('#/signin?error=access_denied').get('error'), 'access_denied');
  assert.equal(hashQuery('#/?linked=github').get('linked'), 'github');
  assert.equal(hashQuery('#/signin').get('error'), null);
  assert.equal(hashQuery(undefined).get('error'), null);
});

test('only the dashboard’s own paths are pages; anything else is not found', () => {
  assert.equal(isDashboardPath('/'), true);
  assert.equal(isDashboardPath('/index.html'), true);
  assert.equal(isDashboardPath('/nope'), false);
  assert.equal(isDashboardPath('/environments/x'), false);
  assert.equal(hashQuery('#/environments/01JABC?notice=not-running').get('notice'), 'not-running');
  assert.deepEqual(parseRoute('#/environments/01JABC?notice=not-running'), { name: 'detail', id: '01JABC' });
});
