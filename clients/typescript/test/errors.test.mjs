// Each failure cause arrives as its typed error with the server's code and message; retries.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as A from 'apache-arrow';
import {
  AbortedError,
  AlreadyExistsError,
  DeadlineExceededError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PolarwayClient,
  PolarwayError,
  ResourceExhaustedError,
  UnavailableError,
  status,
} from '../dist/index.js';
import { freePort, startServer, uniqueName } from './helpers.mjs';

let server;
let client;

before(async () => {
  // A small upload limit and a 1 s query timeout, to reach those errors quickly.
  server = await startServer({ args: ['--max-upload-bytes', '200000', '--query-timeout', '1'] });
  client = new PolarwayClient({ host: server.host, port: server.port, timeout: 20_000 });
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Assert `promise` rejects with `Cls`, the given gRPC code, and a message matching `message`. */
async function rejectsWith(promise, Cls, code, message) {
  await assert.rejects(promise, (/** @type {PolarwayError} */ e) => {
    assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.ok(e instanceof PolarwayError);
    assert.equal(e.code, code);
    assert.match(e.details, message);
    assert.ok(e.message.includes(e.details));
    return true;
  });
}

describe('server errors', () => {
  test('NOT_FOUND: unknown dataset, version, column', async () => {
    const missing = uniqueName('missing');
    await rejectsWith(client.load(missing), NotFoundError, status.NOT_FOUND, new RegExp(missing));
    await rejectsWith(client.describe(missing), NotFoundError, status.NOT_FOUND, new RegExp(missing));
    await rejectsWith(client.delete(missing), NotFoundError, status.NOT_FOUND, new RegExp(missing));
    const gen = client.loadStream(missing);
    await rejectsWith(gen.next(), NotFoundError, status.NOT_FOUND, new RegExp(missing));
    const name = uniqueName('present');
    await client.store(name, { a: [1] });
    await rejectsWith(client.load(name, { version: 7 }), NotFoundError, status.NOT_FOUND, /7/);
    await rejectsWith(client.describe(name, { version: 7 }), NotFoundError, status.NOT_FOUND, /7/);
    await assert.rejects(client.load(name, { columns: ['nope'] }), (/** @type {PolarwayError} */ e) => {
      // An unknown column is a bad request or a missing thing, depending on how one reads it.
      assert.ok(e instanceof NotFoundError || e instanceof InvalidArgumentError, e.message);
      assert.match(e.details, /nope/);
      return true;
    });
  });

  test('INVALID_ARGUMENT: bad name, bad SQL', async () => {
    await rejectsWith(client.store('bad name!', { a: [1] }), InvalidArgumentError, status.INVALID_ARGUMENT, /name/i);
    await rejectsWith(client.store('.hidden', { a: [1] }), InvalidArgumentError, status.INVALID_ARGUMENT, /name/i);
    await rejectsWith(client.store('x'.repeat(256), { a: [1] }), InvalidArgumentError, status.INVALID_ARGUMENT, /name/i);
    await rejectsWith(client.query('SELEC nonsense'), InvalidArgumentError, status.INVALID_ARGUMENT, /syntax|parser/i);
  });

  test('NOT_FOUND: a query over an unknown table, with the server\'s whole message', async () => {
    await rejectsWith(client.query('SELECT * FROM no_such_table_xyz'), NotFoundError, status.NOT_FOUND, /no_such_table_xyz/);
    // grpc-js leaves reserved characters percent-encoded in messages; the client decodes them.
    await assert.rejects(client.query('SELECT * FROM no_such_table_xyz'), (/** @type {PolarwayError} */ e) => !/%[0-9A-F]{2}/.test(e.details));
  });

  test('ALREADY_EXISTS and ABORTED: failed conditions', async () => {
    const name = uniqueName('cond');
    await client.store(name, { a: [1] });
    await rejectsWith(client.store(name, { a: [2] }, { ifAbsent: true }), AlreadyExistsError, status.ALREADY_EXISTS, new RegExp(name));
    await rejectsWith(client.store(name, { a: [2] }, { ifVersion: 5 }), AbortedError, status.ABORTED, /version/i);
    assert.equal((await client.describe(name)).version, 1);
  });

  test('PERMISSION_DENIED: the SQL sandbox', async () => {
    for (const sql of [
      "SELECT * FROM read_csv('/etc/passwd')",
      "COPY (SELECT 1) TO '/tmp/polarway-ts-escape.csv'",
      "ATTACH '/tmp/polarway-ts-escape.db' AS x",
      'INSTALL httpfs',
      "SET enable_external_access = true",
    ]) {
      await assert.rejects(client.query(sql), (/** @type {PolarwayError} */ e) => {
        assert.ok(e instanceof PermissionDeniedError, `${sql}: ${e.constructor.name}: ${e.message}`);
        assert.equal(e.code, status.PERMISSION_DENIED);
        assert.ok(e.details.length > 0);
        return true;
      });
    }
  });

  test('RESOURCE_EXHAUSTED: upload over the server limit; nothing is stored', async () => {
    const name = uniqueName('huge');
    const big = new A.Table({ x: A.makeVector(new Float64Array(100_000)) }); // 800 kB > 200 kB
    await rejectsWith(client.store(name, big), ResourceExhaustedError, status.RESOURCE_EXHAUSTED, /.+/);
    await assert.rejects(client.describe(name), NotFoundError);
  });

  test('DEADLINE_EXCEEDED: the server query timeout, and the client timeout', async () => {
    const slow = 'SELECT sum(hash(range)) FROM range(100000000000)';
    await rejectsWith(client.query(slow), DeadlineExceededError, status.DEADLINE_EXCEEDED, /.+/);
    const started = Date.now();
    await rejectsWith(client.query(slow, { timeout: 200 }), DeadlineExceededError, status.DEADLINE_EXCEEDED, /.+/);
    assert.ok(Date.now() - started < 5000);
  });
});

describe('client-side input errors (nothing is sent)', () => {
  test('columns of different lengths, mixed types, not a table', async () => {
    await assert.rejects(client.store(uniqueName(), { a: [1, 2], b: [1] }), (e) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.match(e.details, /column "b" has 1 values but the previous columns have 2/);
      return true;
    });
    await assert.rejects(client.store(uniqueName(), { a: [1, 'two'] }), /column "a" mixes value types \(number, string\)/);
    await assert.rejects(client.store(uniqueName(), { a: 5 }), InvalidArgumentError);
    await assert.rejects(client.store(uniqueName(), [1, 2, 3]), InvalidArgumentError);
    await assert.rejects(client.store(uniqueName(), { f: [() => 1] }), InvalidArgumentError);
  });

  test('tls cert without key', () => {
    assert.throws(() => new PolarwayClient({ tls: { cert: '-----BEGIN CERTIFICATE-----' } }), /cert and tls.key go together/);
  });
});

describe('UNAVAILABLE and retries', () => {
  test('no server: UNAVAILABLE after the configured retries', async () => {
    const port = await freePort();
    const c = new PolarwayClient({ host: '127.0.0.1', port, retries: 2, retryBackoff: 50, timeout: 10_000 });
    try {
      await rejectsWith(c.healthCheck(), UnavailableError, status.UNAVAILABLE, /.+/);
      await rejectsWith(c.list(), UnavailableError, status.UNAVAILABLE, /.+/);
      // Uploads and deletes are not idempotent: one attempt, then the error.
      await rejectsWith(c.store('x', { a: [1] }), UnavailableError, status.UNAVAILABLE, /.+/);
      await rejectsWith(c.delete('x'), UnavailableError, status.UNAVAILABLE, /.+/);
    } finally {
      c.close();
    }
  });

  test('a server that comes up late: idempotent calls retry until it answers', async () => {
    const port = await freePort();
    const c = new PolarwayClient({ host: '127.0.0.1', port, retries: 12, retryBackoff: 100, timeout: 10_000 });
    let late;
    try {
      const health = c.healthCheck();
      const listed = c.list();
      const loaded = c.load('nothing_here').catch((e) => e);
      // Let the first attempts fail against the closed port, then start the server on it.
      await new Promise((r) => setTimeout(r, 1000));
      late = await startServer({ port });
      assert.equal(late.port, port);
      assert.equal(await health, 'OK');
      assert.deepEqual(await listed, []);
      // Retried until the server answered, then the server's answer.
      assert.ok((await loaded) instanceof NotFoundError);
    } finally {
      c.close();
      await late?.stop();
    }
  });
});
