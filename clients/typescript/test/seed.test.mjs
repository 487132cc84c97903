// The user guide's TypeScript example, run as written (only host and port changed) against a
// server whose --data-dir is /data, as in the guide: /data is a private bind mount of a temp dir,
// in a mount namespace of the server's own.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
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

test("the user guide's example runs as written", { skip: !root && 'needs root for a private /data mount' }, async () => {
  // Trades with the `timestamp` column the guide's query filters on (its own stored frame has none).
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

  const source = example.replace("host: 'localhost',\n  port: 50052,", `host: '127.0.0.1',\n  port: ${server.port},`);
  assert.notEqual(source, example, 'host and port replaced');
  const file = `${pkg}examples/.seed-run-${process.pid}.ts`;
  writeFileSync(file, source);
  let out;
  try {
    out = await run(`${pkg}node_modules/.bin/tsx`, [file], { cwd: pkg, timeout: 60_000 });
  } finally {
    rmSync(file, { force: true });
  }
  assert.match(out.stdout, /^Server status: OK$/m);
  assert.match(out.stdout, /Table/);

  // What the example stored and what its query returns, checked through the client.
  assert.deepEqual(rows(await client.load('trades_20260203')), [
    { symbol: 'BTC', price: 50000 },
    { symbol: 'ETH', price: 3000 },
    { symbol: 'SOL', price: 100 },
  ]);
  const result = await client.query(`
  SELECT symbol, AVG(price) as avg_price
  FROM parquet_scan('/data/cold/trades_*.parquet')
  WHERE timestamp > '2026-02-01'
  GROUP BY symbol
`);
  const bySymbol = Object.fromEntries(rows(result).map((r) => [r.symbol, r.avg_price]));
  assert.deepEqual(bySymbol, { BTC: 48000, ETH: 2900, SOL: 90 });
});
