#!/usr/bin/env node
// The TypeScript side of the cross-language test (docs/cross-language.md):
//   node tools/xlang.mjs store HOST:PORT NAME [--token T]   store the shared wide table as NAME
//   node tools/xlang.mjs dump  HOST:PORT NAME [--token T]   print NAME's canonical JSON dump
//   node tools/xlang.mjs copy  HOST:PORT SRC DST [--token T] load SRC, store what was loaded as DST
//   node tools/xlang.mjs fixture                             print the fixed table's dump (no server)
import { PolarwayClient } from '../dist/index.js';
import { canonicalJson } from './canonical.mjs';
import { xlangTable } from './xlang-table.mjs';

async function main(argv) {
  const [command, address, name, ...rest] = argv;
  const dst = command === 'copy' ? rest.shift() : undefined;
  const token = rest[0] === '--token' ? rest[1] : undefined;
  if (command === 'fixture') {
    process.stdout.write(canonicalJson(xlangTable()));
    return;
  }
  if (!['store', 'dump', 'copy'].includes(command) || !address || !name || (command === 'copy' && !dst)) {
    throw new Error('usage: xlang.mjs store|dump HOST:PORT NAME [--token T]  |  copy HOST:PORT SRC DST [--token T]  |  fixture');
  }
  const at = address.lastIndexOf(':');
  const client = new PolarwayClient({
    host: address.slice(0, at).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(at + 1)),
    authToken: token,
    timeout: 60_000,
  });
  try {
    if (command === 'store' || command === 'copy') {
      const info = await client.store(dst ?? name, command === 'copy' ? await client.load(name) : xlangTable());
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
