'use strict';
// A real sbxd for one test file, like tests/integration/daemon.cc.
//
// Each instance gets its own temp dir (socket, state dir, log), cgroup parent
// (sbx-node-<pid>-<n>) and uid range, so test processes may run in parallel.
// stop() destroys what is left through the API, SIGTERMs sbxd by its pid,
// checks that no cgroup, process, mount or state of it remains (throwing if
// one did), removes those leftovers and the temp dir.
//
// new Daemon(tag, { extraArgs }) adds sbxd flags, e.g. a --config with a TCP
// listener (auth.test.js).
//
// Environment: SBX_TEST_SBXD and SBX_TEST_INIT (set by tests/clients/
// CMakeLists.txt) name the sbxd and sbx-init binaries; SBX_TEST_KEEP=1 keeps
// the temp dir; SBX_NODE_SDK the client package (default: the repo's).

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { once } = require('node:events');

const sbx = require(process.env.SBX_NODE_SDK || path.join(__dirname, '..', '..', '..', 'sdk', 'node'));

// Host uid ranges: [1.1e9, 1.5e9), below the integration tests' (1.5e9 and
// up) and above the daemon's default (1e9 + 1024 ranges). tests/clients/
// CMakeLists.txt gives each test its own SBX_TEST_SLOT (0..7; 8 and 9 when
// run by hand), so the client tests of one run never share a range; pid % 37
// keeps concurrent runs (two build trees) apart. A test process has up to 2
// daemons of 8 ranges each: the top is 1.1e9 + (36 * 10 + 9 + 1) * 16 ranges
// of 65536 ids, about 1.488e9.
const UID_BASE = 1100000000;
const IDS_PER_SANDBOX = 65536;
const MAX_SANDBOXES = 8;  // with --pool-size 0: 8 id ranges per daemon
const SLOTS = 10;
const RUNS = 37;

function uidBase(n) {
  const slot = Number(process.env.SBX_TEST_SLOT || 8 + (process.pid % 2)) % SLOTS;
  const ranges = ((process.pid % RUNS) * SLOTS + slot) * 2 * MAX_SANDBOXES;
  return UID_BASE + (ranges + (n % 2) * MAX_SANDBOXES) * IDS_PER_SANDBOX;
}
let instances = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(predicate, timeoutMs, intervalMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

function cgroupMounts() {
  const mounts = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 0 || (f[dash + 1] !== 'cgroup' && f[dash + 1] !== 'cgroup2')) continue;
    mounts.push({ root: f[3], mountPoint: f[4], v2: f[dash + 1] === 'cgroup2',
                  options: new Set(f[dash + 3].split(',')) });
  }
  return mounts;
}

function join(mount, p) {
  let rel = p;
  if (mount.root !== '/' && rel.startsWith(mount.root)) rel = rel.slice(mount.root.length);
  return mount.mountPoint + (rel === '/' ? '' : rel);
}

/** This process's cgroup directories for memory, pids, cpu, cpuacct (v1), or its v2 one. */
function ownCgroupDirs() {
  const pathOf = {};
  let v2Path = null;
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    const controllers = line.slice(first + 1, second);
    const p = line.slice(second + 1);
    if (!controllers) v2Path = p;
    for (const c of controllers.split(',')) pathOf[c] = p;
  }
  const mounts = cgroupMounts();
  const dirs = [];
  for (const controller of ['memory', 'pids', 'cpu', 'cpuacct']) {
    if (!(controller in pathOf)) continue;
    const m = mounts.find((x) => !x.v2 && x.options.has(controller));
    if (m) {
      const d = join(m, pathOf[controller]);
      if (!dirs.includes(d)) dirs.push(d);
    }
  }
  if (dirs.length === 0 && v2Path !== null) {
    const m = mounts.find((x) => x.v2);
    if (m) dirs.push(join(m, v2Path));
  }
  return dirs;
}

function subdirs(dir) {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

function cgroupProcs(dir) {
  let pids = [];
  try {
    pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch { /* gone */ }
  for (const sub of subdirs(dir)) pids = pids.concat(cgroupProcs(path.join(dir, sub)));
  return pids;
}

function tryRmdir(dir) {
  try {
    fs.rmdirSync(dir);
    return true;
  } catch (error) {
    return error.code === 'ENOENT';
  }
}

async function removeCgroupTree(dir) {
  if (!fs.existsSync(dir)) return;
  await waitFor(() => {
    const pids = cgroupProcs(dir);
    for (const pid of pids) {  // only processes in this daemon's own cgroup parent
      try { process.kill(pid, 'SIGKILL'); } catch { /* exited */ }
    }
    return pids.length === 0;
  }, 5000);
  for (const sub of subdirs(dir)) await removeCgroupTree(path.join(dir, sub));
  await waitFor(() => tryRmdir(dir), 2000);
}

function mountsBelow(dir) {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p) => p && (p === dir || p.startsWith(`${dir}/`)));
}

function listTree(dir) {
  let out = [];
  for (const e of (() => { try { return fs.readdirSync(dir, { withFileTypes: true }); } catch { return []; } })()) {
    out.push(e.name);
    if (e.isDirectory()) out = out.concat(listTree(path.join(dir, e.name)));
  }
  return out;
}

class Daemon {
  constructor(tag = 'node', { extraArgs = [] } = {}) {
    this.sbxd = process.env.SBX_TEST_SBXD || '';
    this.init = process.env.SBX_TEST_INIT || '';
    const n = instances++;
    this.tempDir = fs.mkdtempSync(path.join(os.tmpdir(), `sbx-${tag}-`));
    this.socketPath = path.join(this.tempDir, 'sbxd.sock');
    this.stateDir = path.join(this.tempDir, 'state');
    this.logPath = path.join(this.tempDir, 'sbxd.log');
    this.cgroupParent = `sbx-${tag}-${process.pid}-${n}`;
    this.uidBase = uidBase(n);
    this.address = `unix://${this.socketPath}`;
    this.extraArgs = extraArgs;
    this.child = null;
    this.exited = null;
    this.client = null;
    this.destroyed = [];
  }

  async start() {
    for (const [what, file] of [['SBX_TEST_SBXD', this.sbxd], ['SBX_TEST_INIT', this.init]]) {
      try {
        fs.accessSync(file, fs.constants.X_OK);
      } catch {
        throw new Error(`${what} does not name an executable: '${file}'`);
      }
    }
    const argv = ['--socket', this.socketPath, '--state-dir', this.stateDir,
      '--cgroup-parent', this.cgroupParent, '--uid-base', String(this.uidBase),
      '--max-sandboxes', String(MAX_SANDBOXES), '--pool-size', '0',
      '--init-path', this.init, '--log-level', 'debug', ...this.extraArgs];
    const log = fs.openSync(this.logPath, 'a');
    // detached: its own session, so a ^C at the terminal reaches the test first.
    this.child = childProcess.spawn(this.sbxd, argv, { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.exited = once(this.child, 'exit');
    let exitCode = null;
    this.exited.then(([code, signal]) => { exitCode = code === null ? signal : code; });
    const t0 = Date.now();
    let last = null;
    const ready = await waitFor(async () => {
      if (exitCode !== null) return true;
      if (!fs.existsSync(this.socketPath)) return false;
      const client = sbx.connect(this.address, { timeout: 500 });
      try {
        await client.list();
        this.client = client;
        return true;
      } catch (error) {
        last = error;
        client.close();
        return false;
      }
    }, 20000);
    if (exitCode !== null) {
      throw new Error(`sbxd exited (${exitCode}) during start-up; log:\n${this.logTail()}`);
    }
    if (!ready) throw new Error(`sbxd did not answer within 20 s (last: ${last}); log:\n${this.logTail()}`);
    this.client.close();
    this.client = sbx.connect(this.address);
    console.log(`[daemon] sbxd pid ${this.child.pid} ready in ${Date.now() - t0} ms (${this.tempDir}, ` +
                `cgroup parent ${this.cgroupParent}, uid base ${this.uidBase})`);
    return this;
  }

  logTail(size = 4000) {
    try {
      const data = fs.readFileSync(this.logPath);
      return data.subarray(Math.max(0, data.length - size)).toString();
    } catch {
      return '<no log>';
    }
  }

  /** Destroys what is left, SIGTERMs sbxd, checks for and removes leftovers. */
  async stop() {
    const problems = [];
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      try {
        for (const box of await this.client.list()) {
          await this.client.destroy(box.id);
          this.destroyed.push(box.id);
        }
      } catch (error) {
        problems.push(`teardown: destroying the sandboxes left: ${error.message}`);
      }
      this.client.close();
      this.child.kill('SIGTERM');
      let timer;
      const timeout = new Promise((resolve) => { timer = setTimeout(resolve, 10000, 'timeout'); });
      const outcome = await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        problems.push('sbxd did not exit within 10 s of SIGTERM');
        this.child.kill('SIGKILL');
        await this.exited;
      } else {
        const [code, signal] = outcome;
        // sbxd takes SIGTERM and exits 0; dying of it is a failure too.
        if (code !== 0) {
          problems.push(`sbxd exited with ${code ?? signal} on SIGTERM; log:\n${this.logTail()}`);
        }
      }
    } else if (this.client) {
      this.client.close();
    }

    for (const parent of ownCgroupDirs()) {
      const dir = path.join(parent, this.cgroupParent);
      if (fs.existsSync(dir)) {
        const children = subdirs(dir);
        const procs = cgroupProcs(dir);
        if (children.length || procs.length) {
          problems.push(`teardown: leftovers in ${dir}: ${children.length} child cgroups, ${procs.length} processes`);
        }
        await removeCgroupTree(dir);
      }
      // cgroup v2: the leaf sbxd moved itself into stays after it exits.
      await removeCgroupTree(path.join(parent, `${this.cgroupParent}.daemon`));
    }
    const state = listTree(this.stateDir);
    for (const id of this.destroyed) {
      const left = state.find((name) => name.includes(id));
      if (left) problems.push(`teardown: state left for ${id}: ${left}`);
    }
    const mounts = mountsBelow(this.tempDir);
    if (mounts.length) problems.push(`teardown: mounts left below ${this.tempDir}: ${mounts.join(' ')}`);
    for (const point of mounts.reverse()) childProcess.spawnSync('umount', ['-l', point]);
    if (process.env.SBX_TEST_KEEP) console.log(`[daemon] kept ${this.tempDir}`);
    else fs.rmSync(this.tempDir, { recursive: true, force: true });
    if (problems.length) throw new Error(problems.join('\n'));
  }
}

/** Asserts that `promise` rejects with an SbxError of `codeName`; returns the error. */
async function rejectsWith(promise, codeName) {
  let error = null;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error, `expected ${codeName}, but the call succeeded`);
  assert.ok(error instanceof sbx.SbxError, `not an SbxError: ${error && error.stack}`);
  assert.equal(error.codeName, codeName, error.message);
  assert.equal(error.code, sbx.status[codeName]);
  assert.ok(error.details.length > 0, 'no message');
  return error;
}

module.exports = { Daemon, sbx, sleep, rejectsWith };
