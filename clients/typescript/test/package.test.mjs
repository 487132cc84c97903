// The package itself: its proto copy, routing keys, plain-column typing (no server needed).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { firstTable, toTable } from '../dist/index.js';
import { PROTO_PATH } from '../dist/proto.js';

test("the package's proto is byte for byte the repository's proto/", () => {
  const repo = new URL('../../../proto/polarway/v1/polarway.proto', import.meta.url);
  assert.ok(readFileSync(PROTO_PATH).equals(readFileSync(repo)), 'run: npm run build (it copies proto/)');
});

test('the routing key of a query is its first table', () => {
  assert.equal(firstTable('SELECT * FROM trades_20260203 WHERE x > 1'), 'trades_20260203');
  assert.equal(firstTable('select a from\n  quotes.v2 join b on true'), 'quotes.v2');
  assert.equal(firstTable('FROM orders LIMIT 1'), 'orders');
  assert.equal(firstTable('SELECT * FROM "my-table"'), 'my-table');
  assert.equal(firstTable("SELECT * FROM parquet_scan('/data/cold/x.parquet')"), '');
  assert.equal(firstTable('SELECT 1'), '');
});

test('plain columns: numbers are Float64, typed arrays keep their type', () => {
  const t = toTable({ n: [1, 2, 3], i: new Int32Array(3), b: new BigInt64Array(3), s: ['a', null, undefined] });
  assert.deepEqual(t.schema.fields.map((f) => `${f.name}: ${f.type}`), ['n: Float64', 'i: Int32', 'b: Int64', 's: Utf8']);
  assert.equal(t.getChild('s').nullCount, 2);
});
