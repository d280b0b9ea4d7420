import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRoute, hrefFor } from '../js/router.js';

test('hash routes', () => {
  assert.deepEqual(parseRoute(''), { name: 'list' });
  assert.deepEqual(parseRoute('#/'), { name: 'list' });
  assert.deepEqual(parseRoute('#/signup'), { name: 'signup' });
  assert.deepEqual(parseRoute('#/environments/01JABC'), { name: 'detail', id: '01JABC' });
  assert.deepEqual(parseRoute('#/nope/x'), { name: 'notFound' });
  assert.equal(parseRoute('#main'), null);
  assert.equal(hrefFor({ name: 'detail', id: 'a b' }), '#/environments/a%20b');
});
