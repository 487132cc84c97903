#!/usr/bin/env node
// Cross-language helper (see README.md, "Cross-language tool"):
//   node tools/xlang.mjs store HOST:PORT NAME [--token T]   store the fixed wide-typed table as NAME
//   node tools/xlang.mjs dump  HOST:PORT NAME [--token T]   print NAME's canonical JSON dump
//   node tools/xlang.mjs fixture                             print the fixed table's dump (no server)
import { PolarwayClient } from '../dist/index.js';
import { canonicalJson } from './canonical.mjs';
import { wideTable } from './wide-table.mjs';

const FIXTURE_ROWS = 9;

async function main(argv) {
  const [command, address, name, ...rest] = argv;
  const token = rest[0] === '--token' ? rest[1] : undefined;
  if (command === 'fixture') {
    process.stdout.write(canonicalJson(wideTable(FIXTURE_ROWS)));
    return;
  }
  if (!['store', 'dump'].includes(command) || !address || !name) {
    throw new Error('usage: xlang.mjs store|dump HOST:PORT NAME [--token T]  |  xlang.mjs fixture');
  }
  const at = address.lastIndexOf(':');
  const client = new PolarwayClient({
    host: address.slice(0, at).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(at + 1)),
    authToken: token,
    timeout: 60_000,
  });
  try {
    if (command === 'store') {
      const info = await client.store(name, wideTable(FIXTURE_ROWS));
      process.stdout.write(`${JSON.stringify({ name: info.name, version: info.version, rows: info.rows })}\n`);
    } else {
      process.stdout.write(canonicalJson(await client.load(name)));
    }
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`xlang: ${e.message}\n`);
  process.exit(1);
});
