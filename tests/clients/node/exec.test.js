'use strict';
// The Node client's exec against a real sbxd: stdout / stderr / exit code,
// stdin byte for byte (also 1 MiB and streamed), events and callbacks,
// signals, time limits and errors of the stream.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Readable } = require('node:stream');
const { once } = require('node:events');
const { describe, test, before, after } = require('node:test');
const { Daemon, sbx, rejectsWith } = require('./sbxd');

// A stalled call fails its test instead of the whole file hanging.
const T = { timeout: 60000 };

describe('exec', () => {
  let daemon;
  let box;
  before(async () => {
    daemon = await new Daemon().start();
    box = await daemon.client.create({ memory: '256M', pids: 64, labels: { suite: 'node-exec' } });
  });
  after(async () => {
    if (box) await box.destroy();
    if (daemon) await daemon.stop();
  });

  test('stdout, stderr and exit code', T, async () => {
    const r = await box.exec(['sh', '-c', "printf 'to out'; printf 'to err' >&2; exit 3"]);
    assert.equal(r.stdout.toString(), 'to out');
    assert.equal(r.stderr.toString(), 'to err');
    assert.equal(r.exitCode, 3);
    assert.equal(r.signal, 0);
    assert.equal(r.verdict, 'RUNTIME_ERROR');
    assert.equal(r.exit.returnCode, 3);
    assert.equal(r.ok, false);
    assert.ok(r.exit.wallTimeMs > 0);
  });

  test('success', T, async () => {
    const r = await daemon.client.exec(box.id, ['echo', 'hello', 'world']);
    assert.deepEqual([r.stdout.toString(), r.stderr.length, r.exitCode, r.verdict, r.ok],
                     ['hello world\n', 0, 0, 'OK', true]);
  });

  test('stdin round trip is exact', T, async () => {
    const payload = Buffer.concat([Buffer.from([...Array(256).keys()]), Buffer.from([...Array(256).keys()]),
                                   Buffer.from('\r\n\0 no newline at the end')]);
    const r = await box.exec(['cat'], { stdin: payload });
    assert.ok(r.stdout.equals(payload));
    assert.equal(r.exitCode, 0);
  });

  test('one mebibyte of stdin round trip', T, async () => {
    const payload = crypto.randomBytes((1 << 20) + 7);
    const r = await box.exec(['cat'], { stdin: payload, deadline: 50000 });
    assert.equal(r.stdout.length, payload.length);
    assert.ok(r.stdout.equals(payload), 'stdout differs from stdin');
    const digest = await box.exec(['sha256sum'], { stdin: payload, deadline: 50000 });
    assert.equal(digest.stdout.toString().split(' ')[0], crypto.createHash('sha256').update(payload).digest('hex'));
  });

  test('a slow consumer gets all output after the command exits', T, async () => {
    // cat exits long before its last MiB of output is through (each chunk
    // holds the event loop for 50 ms), so the daemon must keep streaming
    // what is left in the pipe after its drain deadline.
    const payload = crypto.randomBytes((1 << 20) + 7);
    const chunks = [];
    const r = await box.exec(['cat'], {
      stdin: payload,
      deadline: 50000,
      onStdout: (chunk) => {
        chunks.push(chunk);
        const until = Date.now() + 50;
        while (Date.now() < until) { /* a slow sink */ }
      },
    });
    assert.equal(r.exitCode, 0);
    assert.ok(Buffer.concat(chunks).equals(payload), 'stdout differs from stdin');
  });

  test('stdin from a Readable, an async generator and strings', T, async () => {
    const big = Buffer.alloc(200000, 'x');
    let r = await box.exec(['cat'], { stdin: Readable.from([Buffer.from('first '), big]) });
    assert.ok(r.stdout.equals(Buffer.concat([Buffer.from('first '), big])));
    async function* generate() {
      yield 'second ';
      yield Uint8Array.from([0xff, 0xfe]);
    }
    r = await box.exec(['cat'], { stdin: generate() });
    assert.ok(r.stdout.equals(Buffer.from([...Buffer.from('second '), 0xff, 0xfe])));
    r = await box.exec(['cat'], { stdin: 'héllo' });
    assert.equal(r.stdout.toString(), 'héllo');
    r = await box.exec(['cat']);  // stdin closed at once: EOF
    assert.deepEqual([r.stdout.length, r.exitCode], [0, 0]);
  });

  test('callbacks and events stream the output', T, async () => {
    const out = [];
    const err = [];
    const started = [];
    const exits = [];
    const r = await box.exec(['sh', '-c', 'for i in 1 2 3; do echo out$i; echo err$i >&2; done'], {
      onStdout: (b) => out.push(b), onStderr: (b) => err.push(b),
      onStarted: (pid) => started.push(pid), onExit: (e) => exits.push(e),
    });
    assert.equal(Buffer.concat(out).toString(), 'out1\nout2\nout3\n');
    assert.equal(Buffer.concat(err).toString(), 'err1\nerr2\nerr3\n');
    assert.deepEqual([r.stdout.length, r.stderr.length], [0, 0], 'callbacks took the output');
    assert.equal(started.length, 1);
    assert.ok(started[0] > 0);
    assert.deepEqual(exits, [r.exit]);

    const proc = box.spawn(['sh', '-c', 'echo event-out; echo event-err >&2']);
    const events = [];
    proc.on('started', (pid) => events.push(['started', pid > 0]));
    proc.on('stdout', (b) => events.push(['stdout', b.toString()]));
    proc.on('stderr', (b) => events.push(['stderr', b.toString()]));
    proc.on('exit', (e) => events.push(['exit', e.exitCode]));
    await proc.end();
    const result = await proc.wait();
    assert.deepEqual(events.filter((e) => e[0] !== 'stderr' && e[0] !== 'stdout'), [['started', true], ['exit', 0]]);
    assert.equal(events.filter((e) => e[0] === 'stdout').map((e) => e[1]).join(''), 'event-out\n');
    assert.equal(events.filter((e) => e[0] === 'stderr').map((e) => e[1]).join(''), 'event-err\n');
    assert.equal(result.stdout.toString(), 'event-out\n', 'events do not take the output');
  });

  test('env and cwd', T, async () => {
    const r = await box.exec(['sh', '-c', 'printf "%s|%s|" "$ONE" "$TWO"; pwd'],
                             { env: { ONE: '1', TWO: 'two words' }, cwd: '/tmp' });
    assert.equal(r.stdout.toString(), '1|two words|/tmp\n');
  });

  test('interactive stdin and stdout', T, async () => {
    const proc = box.spawn(['cat']);
    const chunks = [];
    proc.on('stdout', (b) => chunks.push(b));
    await proc.write('ping\n');
    await once(proc, 'stdout');
    assert.equal(Buffer.concat(chunks).toString(), 'ping\n');
    assert.ok(proc.pid > 0);
    await proc.write(Buffer.from('pong\n'));
    await proc.closeStdin();
    await proc.closeStdin();  // idempotent
    const r = await proc.wait();
    assert.equal(r.stdout.toString(), 'ping\npong\n');
    assert.equal(r.exitCode, 0);
    await rejectsWith(proc.kill('SIGTERM'), 'FAILED_PRECONDITION');
  });

  test('a signal from the client', T, async () => {
    const proc = box.spawn(['sh', '-c', 'echo ready; exec sleep 60']);
    await once(proc, 'stdout');
    await proc.kill('SIGTERM');
    const r = await proc.wait();
    assert.equal(r.signal, 15);
    assert.equal(r.verdict, 'SIGNALED');
    assert.equal(r.exit.returnCode, 128 + 15);
    assert.ok(r.exit.wallTimeMs < 30000);
  });

  test('killed by a signal', T, async () => {
    const r = await box.exec(['sh', '-c', 'echo before; kill -KILL $$; echo after']);
    assert.equal(r.stdout.toString(), 'before\n');
    assert.equal(r.signal, 9);
    assert.equal(r.verdict, 'SIGNALED');
  });

  test('wall time limit', T, async () => {
    const r = await box.exec(['sleep', '30'], { timeout: '500ms' });
    assert.equal(r.exit.timedOut, true);
    assert.equal(r.verdict, 'WALL_TIME_LIMIT');
    assert.ok(r.exit.wallTimeMs >= 450 && r.exit.wallTimeMs < 10000, `${r.exit.wallTimeMs}`);
  });

  test('cpu time limit', T, async () => {
    const r = await box.exec(['sh', '-c', 'while :; do :; done'], { limits: { cpuTime: 300, wallTime: '20s' } });
    assert.equal(r.verdict, 'TIME_LIMIT');
    assert.equal(r.exit.cpuTimeExceeded, true);
    assert.equal(r.exit.timedOut, false);
    assert.ok(r.exit.cpuTimeMs >= 290 && r.exit.cpuTimeMs < 2000, `${r.exit.cpuTimeMs}`);
  });

  test('output limit', T, async () => {
    const r = await box.exec(['sh', '-c', 'yes | head -c 100000'], { limits: { output: '10k' } });
    assert.equal(r.verdict, 'OUTPUT_LIMIT');
    assert.equal(r.exit.outputTruncated, true);
    assert.ok(r.stdout.length <= 10 * 1024);
  });

  test('cancel', T, async () => {
    const proc = box.spawn(['sleep', '60']);
    await once(proc, 'started');
    proc.cancel();
    await rejectsWith(proc.wait(), 'CANCELLED');
  });

  test('client-side deadline', T, async () => {
    await rejectsWith(box.exec(['sleep', '60'], { deadline: 500 }), 'DEADLINE_EXCEEDED');
  });

  test('a callback that throws rejects wait()', T, async () => {
    await assert.rejects(box.exec(['sh', '-c', 'echo x; sleep 60'], {
      onStdout: () => { throw new Error('callback failed'); },
    }), /callback failed/);
  });

  test('invalid exec is INVALID_ARGUMENT', T, async () => {
    assert.throws(() => box.spawn([]), (e) => e.codeName === 'INVALID_ARGUMENT');
    assert.throws(() => box.spawn('echo hi'), (e) => e.codeName === 'INVALID_ARGUMENT');
    const e = await rejectsWith(box.exec(['']), 'INVALID_ARGUMENT');  // the daemon
    assert.match(e.details, /argv/);
    await rejectsWith(box.exec(['true'], { env: { 'A=B': '1' } }), 'INVALID_ARGUMENT');
    const proc = box.spawn(['sleep', '10']);
    assert.throws(() => proc.kill(0), (err) => err.codeName === 'INVALID_ARGUMENT');
    assert.throws(() => proc.kill('SIGNOPE'), (err) => err.codeName === 'INVALID_ARGUMENT');
    proc.cancel();
    await rejectsWith(proc.wait(), 'CANCELLED');
  });

  test('an unknown command is NOT_FOUND', T, async () => {
    const e = await rejectsWith(box.exec(['no-such-command-anywhere']), 'NOT_FOUND');
    assert.match(e.details, /no-such-command-anywhere/);
  });
});
