'use strict';
// The Node client's file transfer and judge runs against a real sbxd.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Readable } = require('node:stream');
const { describe, test, before, after } = require('node:test');
const { Daemon, sbx, rejectsWith } = require('./sbxd');

// A stalled call fails its test instead of the whole file hanging.
const T = { timeout: 60000 };

const SUM_C = `#include <stdio.h>
int main(void) {
  long a, b;
  if (scanf("%ld %ld", &a, &b) != 2) return 2;
  if (a < 0) for (;;) {}  /* burns cpu until the time limit */
  printf("%ld\\n", a + b);
  return 0;
}
`;

describe('files', () => {
  let daemon;
  let box;
  before(async () => {
    daemon = await new Daemon().start();
    box = await daemon.client.create({ labels: { suite: 'node-files' } });
  });
  after(async () => {
    if (box) await box.destroy();
    if (daemon) await daemon.stop();
  });

  test('write then read round trip', T, async () => {
    const binary = crypto.randomBytes(300 * 1024 + 3);  // more than one 256 KiB chunk
    const script = '#!/bin/sh\necho from-script "$@"\n';
    const result = await box.writeFiles([
      { path: 'notes/a.txt', content: 'hello\n' },
      { path: 'notes/deep/bin.dat', content: binary },
      { path: '/tmp/unicode.txt', content: 'héllo wörld' },
      { path: 'run.sh', content: script, mode: 0o755 },
      { path: 'empty', content: Buffer.alloc(0) },
      { path: 'made/dir', isDir: true, mode: 0o700 },
      { path: 'link-to-a', symlinkTarget: 'notes/a.txt' },
    ]);
    assert.deepEqual(result, {
      files: 7, bytes: 6 + binary.length + Buffer.byteLength('héllo wörld') + script.length,
    });

    assert.equal((await box.readFile('notes/a.txt')).toString(), 'hello\n');
    assert.ok((await box.readFile('/work/notes/deep/bin.dat')).equals(binary));
    assert.equal((await box.readFile('/tmp/unicode.txt')).toString(), 'héllo wörld');
    assert.equal((await box.readFile('empty')).length, 0);
    const chunks = [];
    assert.deepEqual(await box.readFileChunks('notes/deep/bin.dat', (c) => chunks.push(c)),
                     { files: 1, bytes: binary.length });
    assert.ok(chunks.length >= 2, 'a 300 KiB file comes in more than one chunk');
    assert.ok(Buffer.concat(chunks).equals(binary));

    // The files are there for commands, with their modes.
    const r = await box.exec(['sh', '-c', "./run.sh arg; stat -c '%a %u' run.sh made/dir; readlink link-to-a; cat link-to-a"]);
    assert.equal(r.stdout.toString(), 'from-script arg\n755 1000\n700 1000\nnotes/a.txt\nhello\n');
    // And what a command writes comes back exactly.
    await box.exec(['sh', '-c', "printf 'made inside\\000\\001' > /work/out.bin"]);
    assert.ok((await box.readFile('out.bin')).equals(Buffer.from('made inside\x00\x01', 'latin1')));
  });

  test('streamed write from a Readable', T, async () => {
    const payload = crypto.randomBytes((1 << 20) + 11);
    const pieces = [];
    for (let i = 0; i < payload.length; i += 100000) pieces.push(payload.subarray(i, i + 100000));
    assert.deepEqual(await daemon.client.writeFile(box.id, 'big.bin', Readable.from(pieces)),
                     { files: 1, bytes: payload.length });
    assert.ok((await box.readFile('big.bin')).equals(payload));
    const r = await box.exec(['stat', '-c', '%s', 'big.bin']);
    assert.equal(r.stdout.toString(), `${payload.length}\n`);
  });

  test('an existing file is replaced', T, async () => {
    await box.writeFile('replace.txt', 'a much longer first version\n');
    await box.writeFiles({ 'replace.txt': 'short\n' });
    assert.equal((await box.readFile('replace.txt')).toString(), 'short\n');
  });

  test('read errors', T, async () => {
    await rejectsWith(box.readFile('no/such/file'), 'NOT_FOUND');
    await box.writeFiles([{ path: 'adir', isDir: true }]);
    await rejectsWith(box.readFile('adir'), 'FAILED_PRECONDITION');
  });

  test('write errors', T, async () => {
    await rejectsWith(box.writeFiles({ '': 'x' }), 'INVALID_ARGUMENT');  // client side
    await rejectsWith(box.writeFiles({ 'bad\0name': 'x' }), 'INVALID_ARGUMENT');  // the daemon
    let error = null;
    try {
      await box.writeFiles({ '/usr/bin/new-file': 'x' });  // read-only /usr
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof sbx.SbxError);
    assert.ok(['PERMISSION_DENIED', 'FAILED_PRECONDITION'].includes(error.codeName), error.message);
  });
});

describe('run', () => {
  let daemon;
  let client;
  before(async () => {
    daemon = await new Daemon().start();
    client = daemon.client;
  });
  after(async () => {
    if (daemon) await daemon.stop();
  });

  test('simple cases', T, async () => {
    const result = await client.run({
      runArgv: ['python3', '-c', 'print(sum(map(int, input().split())))'],
      cases: [{ stdin: '2 3\n', expectedStdout: '5\n' }, { stdin: Buffer.from('1 1\n'), expectedStdout: '3\n' }, '40 2\n'],
    });
    assert.deepEqual(result.cases.map((c) => c.verdict), ['OK', 'WRONG_ANSWER', 'OK']);
    assert.deepEqual(result.cases.map((c) => c.stdout.toString()), ['5\n', '2\n', '42\n']);
    assert.equal(result.verdict, 'WRONG_ANSWER');
    assert.equal(result.compile, null);
    assert.ok(result.sandboxId);
    await rejectsWith(client.get(result.sandboxId), 'NOT_FOUND');  // the run's sandbox is gone
  });

  test('compile, then cases with limits', T, async () => {
    // A generous wall limit: on a loaded machine the loop must reach its
    // cpu limit (TIME_LIMIT) before the wall clock (WALL_TIME_LIMIT).
    const limits = { cpuTime: '500ms', wallTime: '20s', memory: '64M' };
    const result = await client.run({
      files: { 'sum.c': SUM_C },
      compileArgv: ['gcc', '-O2', '-o', 'sum', 'sum.c'],
      runArgv: ['./sum'],
      cases: [
        { stdin: '2 3\n', expectedStdout: '5\n', limits },
        { stdin: '-1 0\n', expectedStdout: 'x\n', limits },
        { stdin: '40 2', expectedStdout: '42  \n', limits },
      ],
      compare: 'IGNORE_TRAILING_WHITESPACE',
      memory: '512M',
    });
    assert.ok(result.compile);
    assert.equal(result.compile.verdict, 'OK', result.compile.stderr.toString());
    assert.deepEqual(result.cases.map((c) => c.verdict), ['OK', 'TIME_LIMIT', 'OK']);
    assert.equal(result.verdict, 'TIME_LIMIT');
    assert.equal(result.cases[0].stdout.toString(), '5\n');
    assert.equal(result.cases[1].exit.cpuTimeExceeded, true);
    assert.ok(result.cases[1].exit.cpuTimeMs >= 450, `${result.cases[1].exit.cpuTimeMs}`);
  });

  test('compile error', T, async () => {
    const result = await client.run({
      files: [{ path: 'prog.c', content: 'int main( {' }],
      compileArgv: ['gcc', '-o', 'prog', 'prog.c'],
      runArgv: ['./prog'],
      cases: ['1 2\n'],
    });
    assert.equal(result.verdict, 'COMPILE_ERROR');
    assert.equal(result.compile.verdict, 'COMPILE_ERROR');
    assert.match(result.compile.stderr.toString(), /error/);
    assert.deepEqual(result.cases, []);
  });

  test('invalid run', T, async () => {
    await rejectsWith(client.run({ runArgv: ['true'], image: 'no-such-image' }), 'INVALID_ARGUMENT');
    await rejectsWith(client.run({ runArgv: ['true'], compare: 'FUZZY' }), 'INVALID_ARGUMENT');
  });
});
