// TLS, mutual TLS and bearer tokens against the real server, with certificates made here.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PolarwayClient, UnauthenticatedError, UnavailableError, status } from '../dist/index.js';
import { makeCertificates, rows, startServer, uniqueName } from './helpers.mjs';

/** @typedef {import('../dist/index.js').PolarwayError} PolarwayError */

let certDir;
let certs;

before(() => {
  certDir = mkdtempSync(join(tmpdir(), 'polarway-ts-certs-'));
  certs = makeCertificates(certDir);
});

after(() => rmSync(certDir, { recursive: true, force: true }));

/** A store and load through `client`, checked. */
async function roundTrip(client) {
  const name = uniqueName('secure');
  await client.store(name, { symbol: ['BTC', 'ETH'], price: [1.5, 2.5] });
  assert.deepEqual(rows(await client.load(name)), [
    { symbol: 'BTC', price: 1.5 },
    { symbol: 'ETH', price: 2.5 },
  ]);
}

/** The error a client gets when it cannot complete a TLS handshake. */
async function refused(client) {
  try {
    await assert.rejects(client.list(), (/** @type {PolarwayError} */ e) => {
      assert.ok(e instanceof UnavailableError, `${e.constructor.name}: ${e.message}`);
      return true;
    });
  } finally {
    client.close();
  }
}

describe('TLS', () => {
  let server;
  before(async () => {
    server = await startServer({ args: ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey] });
  });
  after(() => server?.stop());

  test('a client trusting the CA (path, PEM text or Buffer) works', async () => {
    for (const ca of [certs.ca, readFileSync(certs.ca, 'utf8'), readFileSync(certs.ca)]) {
      const client = new PolarwayClient({ host: '127.0.0.1', port: server.port, tls: { ca }, retries: 0 });
      try {
        assert.equal(await client.healthCheck(), 'OK');
        await roundTrip(client);
      } finally {
        client.close();
      }
    }
    const byName = new PolarwayClient({ host: 'localhost', port: server.port, tls: { ca: certs.ca }, retries: 0 });
    try {
      assert.equal(await byName.healthCheck(), 'OK');
    } finally {
      byName.close();
    }
  });

  test('a plaintext client, or one not trusting the CA, is refused', async () => {
    await refused(new PolarwayClient({ host: '127.0.0.1', port: server.port, retries: 0, timeout: 5000 }));
    await refused(new PolarwayClient({ host: '127.0.0.1', port: server.port, tls: true, retries: 0, timeout: 5000 }));
  });

  test('the certificate name is checked', async () => {
    await refused(
      new PolarwayClient({ host: '127.0.0.1', port: server.port, tls: { ca: certs.ca, serverName: 'other.example' }, retries: 0, timeout: 5000 }),
    );
  });
});

describe('mutual TLS', () => {
  let server;
  before(async () => {
    server = await startServer({
      args: ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey, '--tls-ca', certs.ca],
    });
  });
  after(() => server?.stop());

  test('a client with a certificate from the CA works', async () => {
    const client = new PolarwayClient({
      host: '127.0.0.1',
      port: server.port,
      tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
      retries: 0,
    });
    try {
      await roundTrip(client);
    } finally {
      client.close();
    }
  });

  test('a client without a certificate is refused', async () => {
    await refused(new PolarwayClient({ host: '127.0.0.1', port: server.port, tls: { ca: certs.ca }, retries: 0, timeout: 5000 }));
  });

  test('a client with a certificate from another CA is refused', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'polarway-ts-other-'));
    try {
      const other = makeCertificates(otherDir);
      await refused(
        new PolarwayClient({
          host: '127.0.0.1',
          port: server.port,
          tls: { ca: certs.ca, cert: other.clientCert, key: other.clientKey },
          retries: 0,
          timeout: 5000,
        }),
      );
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});

describe('bearer token', () => {
  let server;
  before(async () => {
    server = await startServer({ args: ['--auth-token', 's3cret-token'] });
  });
  after(() => server?.stop());

  test('the right token works', async () => {
    const client = new PolarwayClient({ host: '127.0.0.1', port: server.port, authToken: 's3cret-token' });
    try {
      await roundTrip(client);
      assert.ok((await client.cacheStats()).capacity > 0);
    } finally {
      client.close();
    }
  });

  test('no token or a wrong token: UNAUTHENTICATED (health stays open)', async () => {
    for (const authToken of [undefined, 'wrong']) {
      const client = new PolarwayClient({ host: '127.0.0.1', port: server.port, authToken });
      try {
        assert.equal(await client.healthCheck(), 'OK');
        for (const call of [() => client.list(), () => client.load('x'), () => client.store('x', { a: [1] }), () => client.query('SELECT 1')]) {
          await assert.rejects(call(), (/** @type {PolarwayError} */ e) => {
            assert.ok(e instanceof UnauthenticatedError, `${e.constructor.name}: ${e.message}`);
            assert.equal(e.code, status.UNAUTHENTICATED);
            assert.ok(!e.message.includes('s3cret-token'));
            return true;
          });
        }
      } finally {
        client.close();
      }
    }
  });
});
