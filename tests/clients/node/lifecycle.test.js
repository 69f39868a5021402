'use strict';
// The Node client against a real sbxd: create / get / list / destroy,
// setLimits, addresses and the mapping of errors to SbxError.

const assert = require('node:assert/strict');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const { Daemon, sbx, rejectsWith } = require('./sbxd');

// A stalled call fails its test instead of the whole file hanging.
const T = { timeout: 60000 };

const MiB = 1 << 20;

describe('lifecycle', () => {
  let daemon;
  let client;
  before(async () => {
    daemon = await new Daemon().start();
    client = daemon.client;
  });
  after(async () => {
    if (daemon) await daemon.stop();
  });

  test('create, get, list, destroy', T, async () => {
    const box = await client.create({
      memory: '128M', cpus: 0.5, pids: 32, ttl: '10m',
      labels: { suite: 'node', case: 'lifecycle' }, env: { GREETING: 'hello from env' },
    });
    try {
      assert.match(box.id, /\S/);
      assert.equal(box.state, 'RUNNING');
      assert.deepEqual(box.limits, { memoryBytes: 128 * MiB, cpus: 0.5, pids: 32 });
      assert.deepEqual(box.labels, { suite: 'node', case: 'lifecycle' });
      assert.ok(box.initPid > 0);
      assert.ok(box.createdAt instanceof Date);
      const ttlMs = box.expiresAt - box.createdAt;
      assert.ok(Math.abs(ttlMs - 600000) < 5000, `ttl ${ttlMs} ms`);

      const got = await client.get(box.id);
      assert.equal(got.id, box.id);
      assert.equal(got.state, 'RUNNING');
      assert.deepEqual(got.limits, box.limits);
      assert.deepEqual(got.labels, box.labels);
      assert.ok(got.usage.pids >= 1);

      assert.deepEqual((await client.list({ labels: { case: 'lifecycle' } })).map((b) => b.id), [box.id]);
      assert.deepEqual(await client.list({ labels: { case: 'lifecycle', suite: 'other' } }), []);
      assert.ok((await client.list()).some((b) => b.id === box.id));
      assert.ok((await client.list({ state: 'RUNNING' })).some((b) => b.id === box.id));
      assert.ok(!(await client.list({ state: 'DEAD' })).some((b) => b.id === box.id));

      // The sandbox's env is the default environment of every exec.
      const r = await box.exec(['sh', '-c', 'printf "%s" "$GREETING"']);
      assert.equal(r.stdout.toString(), 'hello from env');
    } finally {
      assert.equal(await client.destroy(box.id), true);
    }
    assert.equal(await box.destroy(), false, 'destroy is idempotent');
    await rejectsWith(client.get(box.id), 'NOT_FOUND');
    assert.ok(!(await client.list()).some((b) => b.id === box.id));
  });

  test('withSandbox destroys the sandbox when the function throws', T, async () => {
    let id = null;
    await assert.rejects(client.withSandbox({ labels: { case: 'with' } }, async (box) => {
      id = box.id;
      assert.equal((await box.refresh()).state, 'RUNNING');
      throw new Error('leave by an exception');
    }), /leave by an exception/);
    assert.ok(id);
    await rejectsWith(client.get(id), 'NOT_FOUND');
    assert.deepEqual(await client.list({ labels: { case: 'with' } }), []);
  });

  test('setLimits applies at once', T, async () => {
    await client.withSandbox({ memory: '256M', cpus: 1, pids: 64 }, async (box) => {
      const updated = await client.setLimits(box.id, { memory: '64M', pids: 8 });
      assert.deepEqual(updated.limits, { memoryBytes: 64 * MiB, cpus: 1, pids: 8 });
      assert.deepEqual((await box.refresh()).limits, updated.limits);
      await box.setLimits({ cpus: 0.25 });
      assert.deepEqual(box.limits, { memoryBytes: 64 * MiB, cpus: 0.25, pids: 8 });

      // The pids limit holds now: forks beyond 8 tasks fail.
      const r = await box.exec(['sh', '-c', 'for i in $(seq 20); do sleep 1 & done; wait'], { timeout: '30s' });
      const err = r.stderr.toString();
      assert.ok(err.includes('fork') || err.includes('Resource temporarily unavailable'), err);
    });
  });

  test('setLimits rejects bad values and changes nothing', T, async () => {
    await client.withSandbox({ memory: '128M', pids: 32 }, async (box) => {
      const e = await rejectsWith(box.setLimits({ memory: 1024 }), 'INVALID_ARGUMENT');
      assert.match(e.details, /memory/);
      await rejectsWith(box.setLimits({ pids: 0 }), 'INVALID_ARGUMENT');
      await box.refresh();
      assert.equal(box.limits.memoryBytes, 128 * MiB);
      assert.equal(box.limits.pids, 32);
    });
  });

  test('an unknown sandbox is NOT_FOUND', T, async () => {
    const unknown = 'sb-00000000deadbeef';
    await rejectsWith(client.get(unknown), 'NOT_FOUND');
    await rejectsWith(client.setLimits(unknown, { pids: 10 }), 'NOT_FOUND');
    await rejectsWith(client.exec(unknown, ['true']), 'NOT_FOUND');
    await rejectsWith(client.writeFiles(unknown, { a: 'x' }), 'NOT_FOUND');
    await rejectsWith(client.readFile(unknown, 'a'), 'NOT_FOUND');
    assert.equal(await client.destroy(unknown), false);
  });

  test('bad input is INVALID_ARGUMENT', T, async () => {
    // Checked by the daemon.
    const e = await rejectsWith(client.create({ image: 'no-such-image' }), 'INVALID_ARGUMENT');
    assert.match(e.details, /image/);
    await rejectsWith(client.create({ memory: 4096 }), 'INVALID_ARGUMENT');
    await rejectsWith(client.create({ cpus: 1000 }), 'INVALID_ARGUMENT');
    await rejectsWith(client.create({ labels: { 'bad key!': 'x' } }), 'INVALID_ARGUMENT');
    await rejectsWith(client.create({ env: { 'A=B': 'x' } }), 'INVALID_ARGUMENT');
    // Checked before anything is sent.
    await rejectsWith(client.get(''), 'INVALID_ARGUMENT');
    await rejectsWith(client.create({ memory: '12Q' }), 'INVALID_ARGUMENT');
    await rejectsWith(client.create({ ttl: 'forever' }), 'INVALID_ARGUMENT');
    await rejectsWith(client.run({ runArgv: [] }), 'INVALID_ARGUMENT');
    // Nothing was created by any of these.
    assert.deepEqual(await client.list(), []);
  });

  test('an unreachable daemon is UNAVAILABLE', T, async () => {
    const other = sbx.connect(path.join(daemon.tempDir, 'nobody.sock'), { timeout: 5000 });
    try {
      await rejectsWith(other.list(), 'UNAVAILABLE');
    } finally {
      other.close();
    }
  });

  test('addresses and units', T, async () => {
    const n = sbx.normalizeAddress;
    assert.equal(n('/run/sbx/sbxd.sock'), 'unix:/run/sbx/sbxd.sock');
    assert.equal(n('./x.sock'), 'unix:./x.sock');
    assert.equal(n('unix:///run/x.sock'), 'unix:///run/x.sock');
    assert.equal(n('localhost:50051'), 'localhost:50051');
    for (const bad of ['', 'unix:', 'unix://relative', 'localhost', 'host:port']) {
      assert.throws(() => n(bad), (e) => e.codeName === 'INVALID_ARGUMENT', bad);
    }
    const saved = process.env.SBX_SERVER;
    try {
      delete process.env.SBX_SERVER;
      assert.equal(sbx.defaultAddress(), 'unix:///run/sbx/sbxd.sock');
      process.env.SBX_SERVER = daemon.socketPath;
      const viaEnv = sbx.connect();
      try {
        assert.equal(viaEnv.target, `unix:${daemon.socketPath}`);
        assert.ok(Array.isArray(await viaEnv.list()));
      } finally {
        viaEnv.close();
      }
    } finally {
      if (saved === undefined) delete process.env.SBX_SERVER;
      else process.env.SBX_SERVER = saved;
    }
    assert.equal(sbx.parseSize('64M'), 64 * MiB);
    assert.equal(sbx.parseSize('1.5g'), 3 * 2 ** 29);
    assert.equal(sbx.parseSize('64MiB'), 64 * MiB);
    assert.equal(sbx.parseDurationNs('1h30m'), 5400e9);
    assert.equal(sbx.parseDurationNs(1500), 1.5e9);
    for (const bad of ['-1', '1x', '', 'inf']) assert.throws(() => sbx.parseSize(bad), bad);
    for (const bad of ['5', '-1s', '1 s', 'inf']) assert.throws(() => sbx.parseDurationNs(bad), bad);
  });
});
