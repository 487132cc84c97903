// The user guide's TypeScript example, run as written (only host and port changed) against a
// server whose --data-dir is /data, as in the guide: /data is a private bind mount of a temp dir,
// in a mount namespace of the server's own.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PolarwayClient } from '../dist/index.js';
import { rows, startServer } from './helpers.mjs';

const run = promisify(execFile);
const pkg = fileURLToPath(new URL('..', import.meta.url));
const example = readFileSync(new URL('../examples/distributed-mode.ts', import.meta.url), 'utf8');

let server;
let client;
const root = process.getuid?.() === 0;

before(async () => {
  if (!root) return;
  mkdirSync('/data', { recursive: true });
  server = await startServer({
    dataDir: '/data',
    wrap: (argv, dir) => [
      'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
      'mkdir -p "$1/data" && mount --bind "$1/data" /data && shift && exec "$@"',
      'sh', dir, ...argv,
    ],
  });
  client = new PolarwayClient({ host: server.host, port: server.port });
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Run `source` as a TypeScript file of this package (so '@polarway/client' resolves to it). */
async function runExample(source) {
  const file = `${pkg}examples/.seed-run-${process.pid}.ts`;
  writeFileSync(file, source.replace("host: 'localhost',\n  port: 50052,", `host: '127.0.0.1',\n  port: ${server.port},`));
  try {
    return await run(`${pkg}node_modules/.bin/tsx`, [file], { cwd: pkg, timeout: 60_000 }).then(
      (out) => ({ code: 0, ...out }),
      (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  } finally {
    rmSync(file, { force: true });
  }
}

// The guide's code exactly: the example without the one line it adds.
const verbatim = example
  .replace(/^(\/\/.*\n)+/, '')
  .replace(/,\n  timestamp: \[.*\/\/ added: .*\n/, '\n');

// The user guide's Markdown, to compare the example with when its path is given.
const guide = process.env.POLARWAY_SEED_GUIDE;

test('the example is the guide\'s code plus one line', { skip: !(guide && existsSync(guide)) && 'set POLARWAY_SEED_GUIDE to the user guide\'s Markdown file' }, () => {
  const md = readFileSync(guide, 'utf8');
  const snippet = /### TypeScript Client\n\n```typescript\n([\s\S]*?)```/.exec(md)[1];
  assert.equal(verbatim, snippet);
});

describe('the user guide example against a server with --data-dir /data', { skip: !root && 'needs root for a private /data mount' }, () => {
  before(async () => {
    // Earlier trades with the `timestamp` column the guide's query filters on; one row is too old.
    await client.store('trades_20260202', {
      symbol: ['BTC', 'ETH', 'BTC', 'SOL'],
      price: [48000, 2900, 49000, 90],
      timestamp: [
        new Date('2026-02-02T09:00:00Z'),
        new Date('2026-02-02T10:00:00Z'),
        new Date('2026-01-31T10:00:00Z'),
        new Date('2026-02-02T11:00:00Z'),
      ],
    });
  });

  test('the example runs to the end', async () => {
    const out = await runExample(example);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^Server status: OK$/m);
    assert.match(out.stdout, /Table/);

    const loaded = await client.load('trades_20260203');
    assert.deepEqual(rows(loaded).map(({ symbol, price }) => ({ symbol, price })), [
      { symbol: 'BTC', price: 50000 },
      { symbol: 'ETH', price: 3000 },
      { symbol: 'SOL', price: 100 },
    ]);
    // The guide's query over both days' files, through the client.
    const result = await client.query(`
  SELECT symbol, AVG(price) as avg_price
  FROM parquet_scan('/data/cold/trades_*.parquet')
  WHERE timestamp > '2026-02-01'
  GROUP BY symbol
`);
    const bySymbol = Object.fromEntries(rows(result).map((r) => [r.symbol, r.avg_price]));
    assert.deepEqual(bySymbol, { BTC: 49000, ETH: 2950, SOL: 95 });
  });

  test("the guide's code verbatim: connects, stores, loads; its query fails only on the missing column", async () => {
    const out = await runExample(verbatim);
    assert.match(out.stdout, /^Server status: OK$/m);
    assert.match(out.stdout, /Table/); // the loaded table was printed
    assert.deepEqual(rows(await client.load('trades_20260203')), [
      { symbol: 'BTC', price: 50000 },
      { symbol: 'ETH', price: 3000 },
      { symbol: 'SOL', price: 100 },
    ]);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /InvalidArgumentError: INVALID_ARGUMENT: .*column "timestamp"/);
  });
});
