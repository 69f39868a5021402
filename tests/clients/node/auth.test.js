'use strict';
// The Node client's token and TLS options against a real sbxd with a TLS
// listener on 127.0.0.1, certificates made by the openssl command for this
// file (like tests/integration/auth_test.cc): a token over TLS, wrong and
// missing tokens, an untrusted server, server names, client certificates
// (mTLS), a token on the Unix socket, and the checks of the options.

const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const { Daemon, sbx, rejectsWith } = require('./sbxd');

// A stalled call fails its test instead of the whole file hanging.
const T = { timeout: 60000 };

const ALICE_TOKEN = 'alice-secret-token';
const BOB_TOKEN = 'bob-secret-token';

function openssl(args) {
  const r = childProcess.spawnSync('openssl', args, { encoding: 'utf8', timeout: 60000 });
  if (r.error && r.error.code === 'ENOENT') {
    throw new Error('the openssl command is needed to make the test certificates (apt-get install openssl)');
  }
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr || r.error}`);
}

/** A CA and certificates signed by it, in a temp dir of their own. */
class Pki {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-node-pki-'));
  }

  path(name) {
    return path.join(this.dir, name);
  }

  pem(name) {
    return fs.readFileSync(this.path(name));
  }

  makeCa(name) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', this.path(`${name}.key`), '-out', this.path(`${name}.crt`), '-days', '2', '-subj', `/CN=${name}`]);
  }

  makeCert(name, ca, cn, san) {
    fs.writeFileSync(this.path(`${name}.ext`), `subjectAltName=${san}\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', this.path(`${name}.key`), '-out', this.path(`${name}.csr`), '-subj', `/CN=${cn}`]);
    openssl(['x509', '-req', '-in', this.path(`${name}.csr`), '-CA', this.path(`${ca}.crt`),
      '-CAkey', this.path(`${ca}.key`), '-CAcreateserial', '-out', this.path(`${name}.crt`), '-days', '2',
      '-extfile', this.path(`${name}.ext`)]);
  }

  remove() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');

describe('auth', () => {
  let pki;
  let port;
  let daemon;
  const clients = [];

  /** A client of the TCP listener, closed after the file. */
  function tcpClient(options = {}) {
    const client = sbx.connect(`127.0.0.1:${port}`, { timeout: 10000, ...options });
    clients.push(client);
    return client;
  }
  /** TLS to the listener, verified with the test CA. */
  const tlsClient = (options = {}) => tcpClient({ tls: true, tlsCaPem: pki.pem('ca.crt'), ...options });
  const listed = async (client, id) => (await client.list()).some((b) => b.id === id);

  before(async () => {
    pki = new Pki();
    pki.makeCa('ca');
    pki.makeCa('rogue-ca');
    pki.makeCert('server', 'ca', 'localhost', 'DNS:localhost,IP:127.0.0.1');
    pki.makeCert('alice', 'ca', 'alice-cert', 'DNS:alice.clients.test');
    pki.makeCert('mallory', 'ca', 'mallory', 'DNS:mallory.clients.test');
    pki.makeCert('rogue', 'rogue-ca', 'alice-cert', 'DNS:alice.clients.test');
    port = await freePort();
    fs.writeFileSync(pki.path('sbxd.yaml'), [
      `listen: 127.0.0.1:${port}`,
      'tls:',
      `  cert: ${pki.path('server.crt')}`,
      `  key: ${pki.path('server.key')}`,
      `  client_ca: ${pki.path('ca.crt')}`,
      'tenants:',
      '  alice:',
      `    tokens: [${sha256(ALICE_TOKEN)}]`,
      '    client_names: [alice.clients.test]',
      '  bob:',
      `    tokens: [${sha256(BOB_TOKEN)}]`,
      '',
    ].join('\n'));
    daemon = new Daemon('node', { extraArgs: ['--config', pki.path('sbxd.yaml')] });
    await daemon.start();
  });
  after(async () => {
    for (const client of clients) client.close();
    try {
      if (daemon) await daemon.stop();
    } finally {
      if (pki) pki.remove();
    }
  });

  test('a token over TLS creates, execs and destroys', T, async () => {
    const alice = tlsClient({ token: ALICE_TOKEN });
    const box = await alice.create({ memory: '64M', pids: 32 });
    try {
      const r = await box.exec(['echo', 'hello over tls']);
      assert.equal(r.stdout.toString(), 'hello over tls\n');
      assert.equal(r.exitCode, 0);
      await box.writeFile('note.txt', 'streamed both ways');
      assert.equal((await box.readFile('note.txt')).toString(), 'streamed both ways');
      assert.ok(await listed(alice, box.id));
      // The sandbox is alice's: neither bob nor `local` (the Unix socket
      // without a token) sees it.
      assert.ok(!(await listed(tlsClient({ token: BOB_TOKEN }), box.id)));
      assert.ok(!(await listed(daemon.client, box.id)));
    } finally {
      assert.equal(await alice.destroy(box.id), true);
    }
    assert.ok(!(await listed(alice, box.id)));
  });

  test('a wrong token is UNAUTHENTICATED', T, async () => {
    const wrong = tlsClient({ token: 'not-a-token' });
    const e = await rejectsWith(wrong.list(), 'UNAUTHENTICATED');
    assert.match(e.details, /invalid bearer token/);
    await rejectsWith(wrong.create(), 'UNAUTHENTICATED');
    // A stream as well.
    await rejectsWith(wrong.exec('sb-0000000000000000', ['true']), 'UNAUTHENTICATED');
  });

  test('no token is UNAUTHENTICATED', T, async () => {
    const e = await rejectsWith(tlsClient().list(), 'UNAUTHENTICATED');
    assert.match(e.details, /no credentials/);
  });

  test('a token on the Unix socket makes the calls its tenant', T, async () => {
    // As in the C++ SDK, the token goes on a plain channel too.
    const unixAlice = sbx.connect(daemon.address, { token: ALICE_TOKEN });
    clients.push(unixAlice);
    const box = await unixAlice.create({ memory: '64M', pids: 32 });
    try {
      assert.equal((await box.exec(['echo', 'unix'])).stdout.toString(), 'unix\n');
      assert.ok(await listed(tlsClient({ token: ALICE_TOKEN }), box.id));
      assert.ok(!(await listed(daemon.client, box.id)));
    } finally {
      assert.equal(await unixAlice.destroy(box.id), true);
    }
    const wrong = sbx.connect(daemon.address, { token: 'not-a-token' });
    clients.push(wrong);
    await rejectsWith(wrong.list(), 'UNAUTHENTICATED');
  });

  test('an untrusted server is UNAVAILABLE', T, async () => {
    // A CA that did not sign the server's certificate, and the default roots,
    // which do not hold the test CA.
    for (const options of [{ tlsCaPem: pki.pem('rogue-ca.crt') }, {}]) {
      const client = tcpClient({ tls: true, token: ALICE_TOKEN, ...options });
      const e = await rejectsWith(client.list(), 'UNAVAILABLE');
      assert.match(e.details, /certificate/, JSON.stringify(Object.keys(options)));
    }
  });

  test('plain text to the TLS listener is UNAVAILABLE', T, async () => {
    await rejectsWith(tcpClient({ token: ALICE_TOKEN }).list(), 'UNAVAILABLE');
  });

  test('tlsServerName names the expected certificate', T, async () => {
    assert.ok(Array.isArray(await tlsClient({ token: ALICE_TOKEN, tlsServerName: 'localhost' }).list()));
    const e = await rejectsWith(tlsClient({ token: ALICE_TOKEN, tlsServerName: 'elsewhere.test' }).list(),
      'UNAVAILABLE');
    assert.match(e.details, /elsewhere\.test/);
  });

  test('a client certificate authenticates (mTLS)', T, async () => {
    const cert = tlsClient({ tlsCertPem: pki.pem('alice.crt'), tlsKeyPem: pki.pem('alice.key') });
    const box = await cert.create({ memory: '64M', pids: 32 });
    try {
      assert.equal((await box.exec(['echo', 'mtls'])).stdout.toString(), 'mtls\n');
      // The same tenant as alice's token.
      assert.ok(await listed(tlsClient({ token: ALICE_TOKEN }), box.id));
    } finally {
      assert.equal(await cert.destroy(box.id), true);
    }
  });

  test('unknown client certificates are rejected', T, async () => {
    // Signed by the trusted CA but naming no tenant.
    const mallory = tlsClient({ tlsCertPem: pki.pem('mallory.crt'), tlsKeyPem: pki.pem('mallory.key') });
    const e = await rejectsWith(mallory.list(), 'UNAUTHENTICATED');
    assert.match(e.details, /names no tenant/);
    // Signed by another CA: the server refuses the handshake.
    const rogue = tlsClient({ tlsCertPem: pki.pem('rogue.crt'), tlsKeyPem: pki.pem('rogue.key') });
    await assert.rejects(rogue.list(), (error) => ['UNAVAILABLE', 'UNAUTHENTICATED'].includes(error.codeName));
  });

  test('bad options are INVALID_ARGUMENT', T, async () => {
    const address = `127.0.0.1:${port}`;
    const cert = pki.pem('alice.crt');
    const key = pki.pem('alice.key');
    const bad = [
      [{ tls: true, tlsCertPem: cert }, /go together/],
      [{ tls: true, tlsKeyPem: key }, /go together/],
      [{ tlsCaPem: pki.pem('ca.crt') }, /need tls: true/],
      [{ tlsCertPem: cert, tlsKeyPem: key }, /need tls: true/],
      [{ tlsServerName: 'localhost' }, /need tls: true/],
      [{ tls: true, tlsCaPem: 42 }, /tlsCaPem/],
      [{ token: 'two\nlines' }, /printable ASCII/],
      [{ token: 42 }, /expected a string/],
      [{ tls: true, tlsServerName: 1 }, /tlsServerName/],
    ];
    for (const [options, message] of bad) {
      assert.throws(() => sbx.connect(address, options),
        (e) => e instanceof sbx.SbxError && e.codeName === 'INVALID_ARGUMENT' && message.test(e.details),
        JSON.stringify(options));
    }
  });

  test('PEM text as a string', T, async () => {
    const alice = tcpClient({ tls: true, tlsCaPem: pki.pem('ca.crt').toString(), token: ALICE_TOKEN });
    await alice.waitReady(10000);
    assert.ok(Array.isArray(await alice.list()));
  });
});
