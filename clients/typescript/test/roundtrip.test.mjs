// Round trips through the real server: every Arrow type the JS library writes, plain columns,
// empty tables, batches, projections, versions, conditions, store_batch, catalogue, queries.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import * as A from 'apache-arrow';
import * as grpc from '@grpc/grpc-js';
import { PolarwayClient, AlreadyExistsError, AbortedError, NotFoundError } from '../dist/index.js';
import { fields, rows, startServer, uniqueName } from './helpers.mjs';
import { wideTable } from '../tools/wide-table.mjs';
import { xlangColumns } from '../tools/xlang-table.mjs';

const run = promisify(execFile);

let server;
let client;

before(async () => {
  server = await startServer();
  client = new PolarwayClient({ host: server.host, port: server.port, timeout: 60_000 });
});

after(async () => {
  client?.close();
  await server?.stop();
});

describe('round trips', () => {
  test('health', async () => {
    assert.equal(await client.healthCheck(), 'OK');
    const h = await client.health();
    assert.equal(h.status, 'OK');
    assert.match(h.version, /^\d+\.\d+\.\d+/);
    assert.equal(h.handleStore, 'external');
  });

  test('every Arrow type, with nulls in every column, comes back equal', async () => {
    const table = wideTable(9);
    const name = uniqueName('wide');
    const stored = await client.store(name, table);
    assert.equal(stored.name, name);
    assert.equal(stored.version, 1);
    assert.equal(stored.rows, 9);
    assert.ok(stored.bytes > 0);
    assert.ok(Math.abs(stored.createdUnixMs - Date.now()) < 600_000);

    const loaded = await client.load(name);
    assert.deepEqual(fields(loaded), fields(table));
    assert.deepEqual(rows(loaded), rows(table));
    // Each column has its nulls where they were.
    for (const f of table.schema.fields) {
      assert.equal(loaded.getChild(f.name).nullCount, table.getChild(f.name).nullCount, f.name);
      assert.ok(loaded.getChild(f.name).nullCount > 0, f.name);
    }

    const d = await client.describe(name);
    assert.equal(d.rows, 9);
    assert.deepEqual(d.columns.map((c) => c.name), table.schema.fields.map((f) => f.name));
    assert.ok(d.columns.every((c) => c.nullable));
    const paris = d.columns.find((c) => c.name === 'ts_us_paris').dataType;
    assert.ok(paris.startsWith('Timestamp') && paris.includes('Europe/Paris'), paris);
  });

  test('an empty table keeps its schema', async () => {
    const table = wideTable(0);
    const name = uniqueName('empty');
    const stored = await client.store(name, table);
    assert.equal(stored.rows, 0);
    const loaded = await client.load(name);
    assert.equal(loaded.numRows, 0);
    assert.deepEqual(fields(loaded), fields(table));
  });

  test('a table of many batches comes back whole and in order', async () => {
    const batches = [];
    for (let b = 0; b < 20; b++) {
      const ids = Int32Array.from({ length: 1000 }, (_, i) => b * 1000 + i);
      batches.push(new A.Table({ id: A.makeVector(ids), s: A.vectorFromArray([...ids].map(String), new A.Utf8()) }).batches[0]);
    }
    const table = new A.Table(batches);
    const name = uniqueName('batches');
    await client.store(name, table);
    const loaded = await client.load(name);
    assert.equal(loaded.numRows, 20_000);
    assert.deepEqual([...loaded.getChild('id')], [...table.getChild('id')]);
    assert.deepEqual([...loaded.getChild('s')], [...table.getChild('s')]);
    let n = 0;
    for await (const batch of client.loadStream(name)) {
      assert.ok(batch instanceof A.RecordBatch);
      for (const id of batch.getChild('id')) assert.equal(id, n++);
    }
    assert.equal(n, 20_000);
  });

  test("plain columns as in the user guide, typed arrays and JS values", async () => {
    const name = uniqueName('plain');
    await client.store(name, { symbol: ['BTC', 'ETH', 'SOL'], price: [50000, 3000, 100] });
    const seed = await client.load(name);
    assert.deepEqual(fields(seed), ['symbol: Utf8', 'price: Float64']);
    assert.deepEqual(rows(seed), [
      { symbol: 'BTC', price: 50000 },
      { symbol: 'ETH', price: 3000 },
      { symbol: 'SOL', price: 100 },
    ]);

    const when = new Date(Date.UTC(2026, 1, 3, 12, 30));
    await client.store(name, {
      i32: new Int32Array([1, -2, 3]),
      i64: new BigInt64Array([1n, -(2n ** 63n), 2n ** 63n - 1n]),
      u8: new Uint8Array([0, 128, 255]),
      f32: new Float32Array([0.5, -1.5, 2.25]),
      big: [1n, null, 3n],
      flag: [true, null, false],
      at: [when, null, new Date(0)],
      bytes: [Uint8Array.of(1, 2), null, new Uint8Array(0)],
      tags: [['a', 'b'], [], null],
      point: [{ x: 1, y: 'a' }, null, { x: 3 }],
      nothing: [null, undefined, null],
    });
    const typed = await client.load(name);
    assert.deepEqual(fields(typed), [
      'i32: Int32',
      'i64: Int64',
      'u8: Uint8',
      'f32: Float32',
      'big: Int64',
      'flag: Bool',
      'at: Timestamp<MILLISECOND, UTC>',
      'bytes: Binary',
      'tags: List<Utf8>',
      'point: Struct<{x:Float64, y:Utf8}>',
      'nothing: Null',
    ]);
    assert.deepEqual(rows(typed), [
      { i32: 1, i64: '1n', u8: 0, f32: 0.5, big: '1n', flag: true, at: when.getTime(), bytes: [1, 2], tags: ['a', 'b'], point: { x: 1, y: 'a' }, nothing: null },
      { i32: -2, i64: `${-(2n ** 63n)}n`, u8: 128, f32: -1.5, big: null, flag: null, at: null, bytes: null, tags: [], point: null, nothing: null },
      { i32: 3, i64: `${2n ** 63n - 1n}n`, u8: 255, f32: 2.25, big: '3n', flag: false, at: 0, bytes: [], tags: null, point: { x: 3, y: null }, nothing: null },
    ]);
  });

  test('a RecordBatch can be stored directly', async () => {
    const name = uniqueName('batch');
    const batch = wideTable(4).batches[0];
    await client.store(name, batch);
    assert.deepEqual(rows(await client.load(name)), rows(new A.Table(batch)));
  });

  test('projections, versions and conditional stores', async () => {
    const name = uniqueName('versions');
    const v1 = await client.store(name, { a: [1, 2], b: ['x', 'y'], c: [true, false] }, { ifAbsent: true });
    assert.equal(v1.version, 1);
    await assert.rejects(client.store(name, { a: [9] }, { ifAbsent: true }), AlreadyExistsError);
    const v2 = await client.store(name, { a: [3], b: ['z'], c: [null] }, { ifVersion: 1 });
    assert.equal(v2.version, 2);
    await assert.rejects(client.store(name, { a: [9] }, { ifVersion: 1 }), AbortedError);

    const latest = await client.load(name, { columns: ['c', 'a'] });
    assert.deepEqual(rows(latest), [{ c: null, a: 3 }]);
    const first = await client.load(name, { version: 1, columns: ['b'] });
    assert.deepEqual(rows(first), [{ b: 'x' }, { b: 'y' }]);
    assert.equal((await client.describe(name, { version: 1 })).rows, 2);
    assert.equal((await client.describe(name)).version, 2);
    const streamed = [];
    for await (const b of client.loadStream(name, { version: 1, columns: ['a'] })) streamed.push(...b.getChild('a'));
    assert.deepEqual(streamed, [1, 2]);
  });

  test('store_batch commits several datasets in order', async () => {
    const a = uniqueName('batch_a');
    const b = uniqueName('batch_b');
    const infos = await client.storeBatch({ [a]: { x: [1, 2, 3] }, [b]: wideTable(5) });
    assert.deepEqual(infos.map((i) => [i.name, i.version, i.rows]), [[a, 1, 3], [b, 1, 5]]);
    assert.deepEqual(rows(await client.load(a)), [{ x: 1 }, { x: 2 }, { x: 3 }]);
    assert.deepEqual(rows(await client.load(b)), rows(wideTable(5)));
    const viaMap = await client.storeBatch(new Map([[a, { x: [4] }]]));
    assert.equal(viaMap[0].version, 2);
  });

  test('list, describe, delete', async () => {
    const prefix = uniqueName('cat');
    const names = [`${prefix}_b`, `${prefix}_a`, `${prefix}_c`];
    for (const n of names) await client.store(n, { v: [1, 2] });
    await client.store(names[0], { v: [1, 2, 3] });
    const listed = await client.list(prefix);
    assert.deepEqual(listed.map((d) => d.name), [...names].sort());
    const b = listed.find((d) => d.name === names[0]);
    assert.equal(b.version, 2);
    assert.equal(b.rows, 3);
    assert.deepEqual(b.columns, []);
    assert.ok((await client.list()).length >= 3);
    const d = await client.describe(names[1]);
    assert.deepEqual(d.columns, [{ name: 'v', dataType: 'Float64', nullable: true }]);
    assert.equal(await client.delete(names[0]), 2);
    assert.deepEqual((await client.list(prefix)).map((x) => x.name), [names[1], names[2]]);
    await assert.rejects(client.load(names[0]), NotFoundError);
  });

  test('query, query into, cache stats', async () => {
    const name = uniqueName('trades');
    await client.store(name, { symbol: ['BTC', 'ETH', 'BTC', 'SOL'], price: [50000, 3000, 52000, 100] });
    const result = await client.query(`SELECT symbol, AVG(price) AS avg_price FROM ${name} GROUP BY symbol ORDER BY symbol`);
    assert.deepEqual(rows(result), [
      { symbol: 'BTC', avg_price: 51000 },
      { symbol: 'ETH', avg_price: 3000 },
      { symbol: 'SOL', avg_price: 100 },
    ]);
    const none = await client.query(`SELECT * FROM ${name} WHERE price < 0`);
    assert.equal(none.numRows, 0);
    assert.deepEqual(none.schema.fields.map((f) => f.name), ['symbol', 'price']);

    const into = uniqueName('expensive');
    const stored = await client.queryInto(`SELECT * FROM ${name} WHERE price > 1000 ORDER BY price`, into);
    assert.equal(stored.name, into);
    assert.equal(stored.rows, 3);
    assert.deepEqual([...(await client.load(into)).getChild('price')], [3000, 50000, 52000]);

    const before = await client.cacheStats();
    await client.load(name);
    await client.load(name);
    const after = await client.cacheStats();
    assert.ok(after.hits >= before.hits + 1, `hits ${before.hits} -> ${after.hits}`);
    assert.ok(after.capacity > 0);
    assert.ok(after.hitRate > 0 && after.hitRate <= 1);
    assert.ok(after.entries >= 1);
  });

  test('every call that names a dataset sends the routing key header', async () => {
    const seen = [];
    // A grpc-js interceptor sees the metadata each call puts on the wire.
    const record = (options, nextCall) =>
      new grpc.InterceptingCall(nextCall(options), {
        start(metadata, listener, next) {
          seen.push([options.method_definition.path.split('/').pop(), metadata.get('x-polarway-key')[0] ?? '']);
          next(metadata, listener);
        },
      });
    const keyed = new PolarwayClient({ host: server.host, port: server.port, interceptors: [record] });
    try {
      const name = uniqueName('routed');
      const other = uniqueName('routed_other');
      await keyed.store(name, { v: [1] });
      await keyed.storeBatch({ [other]: { v: [2] }, [name]: { v: [3] } });
      await keyed.load(name);
      for await (const _ of keyed.loadStream(name));
      await keyed.describe(name);
      await keyed.query(`SELECT * FROM ${name} WHERE v > 0`);
      await keyed.query(`SELECT 1 AS one`);
      await keyed.queryInto(`SELECT * FROM ${name}`, other);
      await keyed.delete(other);
      await keyed.list('');
      await keyed.healthCheck();
      assert.deepEqual(seen, [
        ['Store', name],
        ['StoreBatch', other],
        ['Load', name],
        ['Load', name],
        ['Describe', name],
        ['Query', name],
        ['Query', ''],
        ['Query', other],
        ['Delete', other],
        ['List', ''],
        ['Health', ''],
      ]);
    } finally {
      keyed.close();
    }
  });
});

test('the shared cross-language table has a null in every column', () => {
  for (const [name, v] of Object.entries(xlangColumns())) assert.ok(v.nullCount > 0, name);
});

test('the cross-language tool stores the shared table and dumps it back as the golden dump', async () => {
  const tool = fileURLToPath(new URL('../tools/xlang.mjs', import.meta.url));
  const golden = readFileSync(fileURLToPath(new URL('../../../docs/xlang-wide.json', import.meta.url)), 'utf8');
  const address = `${server.host}:${server.port}`;
  const name = uniqueName('xlang');
  const stored = JSON.parse((await run(process.execPath, [tool, 'store', address, name])).stdout);
  assert.deepEqual(stored, { name, version: 1, rows: 5 });
  const dumped = (await run(process.execPath, [tool, 'dump', address, name])).stdout;
  assert.equal(dumped, golden);
  assert.equal((await run(process.execPath, [tool, 'fixture'])).stdout, golden);
  const parsed = JSON.parse(dumped);
  assert.equal(parsed.rows, 5);
  assert.equal(parsed.columns.length, Object.keys(xlangColumns()).length);
  // 64-bit integers are exact in the text.
  assert.match(dumped, /"18446744073709551615"/);
  assert.match(dumped, /"-9223372036854775808"/);
  const missing = await run(process.execPath, [tool, 'dump', address, uniqueName('absent')]).catch((e) => e);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^xlang: NOT_FOUND: /);
});
