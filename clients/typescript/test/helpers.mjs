// Test support: start the real `polarway` binary on a free loopback port, and clean it up.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// $POLARWAY_BIN, else the release build that scripts/run-server.sh and scripts/test.sh share
// (`cargo build --release --workspace`).
export const POLARWAY_BIN =
  process.env.POLARWAY_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/polarway/target'), 'release/polarway');

const LISTENING = /^polarway: listening on (\S+):(\d+)$/;

/**
 * Start `polarway server` with `--grpc-port 0` (or `port`) in a fresh temp dir.
 * `wrap(argv)` may turn the command into another one (e.g. a mount namespace); `dataDir` overrides
 * the data dir argument. Resolves once the server printed its listening line (at most 30 s).
 * @param {{ args?: string[], port?: number, wrap?: (argv: string[], dir: string) => string[],
 *           dataDir?: string, env?: Record<string, string> }} [options]
 */
export async function startServer({ args = [], port = 0, wrap, dataDir, env = {} } = {}) {
  if (!existsSync(POLARWAY_BIN)) throw new Error(`polarway binary not found at ${POLARWAY_BIN} (cargo build --release --workspace, or set POLARWAY_BIN)`);
  const dir = mkdtempSync(join(tmpdir(), 'polarway-ts-'));
  const argv = [POLARWAY_BIN, 'server', '--grpc-port', String(port), '--data-dir', dataDir ?? join(dir, 'data'), ...args];
  const [cmd, ...rest] = wrap ? wrap(argv, dir) : argv;
  const proc = spawn(cmd, rest, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn', ...env },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-20_000);
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const server = {
    proc,
    dir,
    host: '127.0.0.1',
    port: 0,
    get stderr() {
      return stderr;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    server.port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start within 30 s:\n${stderr}`)), 30_000);
      const lines = createInterface({ input: proc.stdout });
      lines.on('line', (line) => {
        const m = LISTENING.exec(line.trim());
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[2]));
        }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code ?? signal}) before listening:\n${stderr}`));
      });
    });
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** A port that was free a moment ago (for starting a server late on a known port). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** Make a CA, a server certificate for 127.0.0.1/localhost and a client certificate, with openssl. */
export function makeCertificates(dir) {
  const p = (f) => join(dir, f);
  const run = (...a) => execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=polarway test CA', '-keyout', p('ca.key'), '-out', p('ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ]) {
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=polarway test ${name}`,
      '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`));
    execFileSync('sh', ['-c', `printf '%b' "$EXT" > "${p(`${name}.ext`)}"`], { env: { ...process.env, EXT: `basicConstraints=CA:FALSE\n${ext}\n` } });
    run('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`));
  }
  return {
    ca: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
  };
}

/** A JSON-friendly view of a table's rows (bigints as strings, bytes as arrays). */
export function rows(table) {
  return JSON.parse(
    JSON.stringify(table.toArray().map((r) => r.toJSON()), (_k, v) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (v instanceof Uint8Array) return [...v];
      return v;
    }),
  );
}

/** The schema as comparable strings, "name: Type" per field. */
export function fields(table) {
  return table.schema.fields.map((f) => `${f.name}: ${f.type}${f.nullable ? '' : ' not null'}`);
}

/** A unique dataset name per test. */
let seq = 0;
export function uniqueName(prefix = 'ts') {
  return `${prefix}_${process.pid}_${Date.now()}_${seq++}`;
}
