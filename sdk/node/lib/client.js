'use strict';
// Client and Sandbox: the sbx.v1.SandboxService calls, promise-based.

const { load } = require('./proto');
const { SbxError, fromServiceError, invalidArgument, failedPrecondition, status } = require('./errors');
const { parseSize, parseDurationNs, toDuration, durationMs } = require('./units');
const { ExecProcess, toExit, toBuffer, stripPrefix } = require('./exec');
const { checkToken, channelCredentials, bearerToken } = require('./auth');

const DEFAULT_ADDRESS = 'unix:///run/sbx/sbxd.sock';
const CHUNK_BYTES = 256 * 1024;

/** $SBX_SERVER when set and non-empty, else the daemon's default socket. */
function defaultAddress() {
  return process.env.SBX_SERVER || DEFAULT_ADDRESS;
}

/**
 * A gRPC target from what a user writes: '/run/x.sock', './x.sock' ->
 * 'unix:/run/x.sock', ...; 'unix:...' and 'host:port' (also dns:, ipv4:,
 * ipv6:) unchanged.
 */
function normalizeAddress(address) {
  const bad = (why) => invalidArgument(`invalid server address "${address}": ${why} ` +
                                       '(expected unix:///path, /path or host:port)');
  if (typeof address !== 'string' || address === '') throw bad('empty');
  if (address.startsWith('unix:')) {
    let path = address.slice(5);
    if (path.startsWith('//')) {
      path = path.slice(2);
      if (!path.startsWith('/')) throw bad('unix:// needs an absolute path');
    }
    if (path === '') throw bad('no socket path');
    return address;
  }
  if (address.startsWith('/') || address.startsWith('./') || address.startsWith('../')) {
    return `unix:${address}`;
  }
  if (/^(dns|ipv4|ipv6):/.test(address)) return address;
  const colon = address.lastIndexOf(':');
  if (colon <= 0) throw bad('no port');
  if (!/^\d{1,5}$/.test(address.slice(colon + 1))) throw bad('bad port');
  return address;
}

function requireId(id) {
  if (typeof id !== 'string' || id === '') throw invalidArgument('sandbox id is empty');
  return id;
}

function strMap(values, what) {
  const out = {};
  for (const [key, value] of Object.entries(values || {})) {
    if (typeof value !== 'string') throw invalidArgument(`${what}: value of ${key} must be a string`);
    out[key] = value;
  }
  return out;
}

function argvOf(argv, what = 'argv') {
  if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) {
    throw invalidArgument(`${what}: expected an array of strings`);
  }
  return argv;
}

function limitsOf({ memory, cpus, pids } = {}) {
  const limits = {};
  if (memory !== undefined && memory !== null) limits.memoryBytes = parseSize(memory, 'memory');
  if (cpus !== undefined && cpus !== null) {
    if (typeof cpus !== 'number') throw invalidArgument('cpus: expected a number');
    limits.cpus = cpus;
  }
  if (pids !== undefined && pids !== null) {
    if (!Number.isInteger(pids)) throw invalidArgument('pids: expected an integer');
    limits.pids = pids;
  }
  return limits;
}

/**
 * ExecLimits for the wire. Times: milliseconds or '500ms'; sizes: bytes or
 * '64M'. Keys: cpuTime, wallTime, memory, pids, output (stdout + stderr
 * bytes), fileSize, stack, openFiles.
 */
function execLimitsOf(limits, what = 'limits') {
  if (!limits) return undefined;
  const out = {};
  if (limits.cpuTime != null) out.cpuTime = toDuration(limits.cpuTime, `${what}.cpuTime`);
  if (limits.wallTime != null) out.wallTime = toDuration(limits.wallTime, `${what}.wallTime`);
  for (const [key, field] of [['memory', 'memoryBytes'], ['output', 'outputBytes'],
    ['fileSize', 'fileSizeBytes'], ['stack', 'stackBytes']]) {
    if (limits[key] != null) out[field] = parseSize(limits[key], `${what}.${key}`);
  }
  for (const key of ['pids', 'openFiles']) {
    if (limits[key] != null) {
      if (!Number.isInteger(limits[key])) throw invalidArgument(`${what}.${key}: expected an integer`);
      out[key] = limits[key];
    }
  }
  return out;
}

function timestamp(t) {
  if (!t) return null;
  return new Date(Number(t.seconds) * 1000 + Math.floor((t.nanos || 0) / 1e6));
}

function optional(message, field) {
  // proto3 `optional` fields: present only when set.
  return message && message[field] !== undefined && message[field] !== null ? message[field] : null;
}

const STATE_PREFIX = 'SANDBOX_STATE_';
const COMPARE_MODES = ['EXACT', 'IGNORE_TRAILING_WHITESPACE'];

function compareOf(compare = 'EXACT') {
  if (!COMPARE_MODES.includes(compare)) {
    throw invalidArgument(`compare: expected one of ${COMPARE_MODES.join(', ')}, got '${compare}'`);
  }
  return `COMPARE_MODE_${compare}`;
}

/** Normalizes files: an object path -> content, or an array of entries. */
function fileEntries(files) {
  const entries = Array.isArray(files)
    ? files
    : Object.entries(files || {}).map(([path, content]) => ({ path, content }));
  for (const entry of entries) {
    if (!entry || typeof entry.path !== 'string' || entry.path === '') {
      throw invalidArgument('files: every entry needs a non-empty path');
    }
  }
  return entries;
}

function isStreamLike(content) {
  return content && typeof content !== 'string' && !(content instanceof Uint8Array) &&
    (typeof content[Symbol.asyncIterator] === 'function' || typeof content[Symbol.iterator] === 'function');
}

function deadlineOf(ms) {
  return ms === undefined || ms === null ? undefined : new Date(Date.now() + ms);
}

class Client {
  /**
   * A connection to one sbxd.
   * @param {string} [address] unix:///path, /path or host:port; default $SBX_SERVER
   *   or /run/sbx/sbxd.sock
   * @param {object} [options]
   * @param {number|null} [options.timeout=30000] deadline of each unary call in ms
   *   (null: none); exec, file transfers and run have none unless given.
   * @param {boolean} [options.waitForReady=false] wait for the daemon instead of
   *   failing at once with UNAVAILABLE.
   * @param {number} [options.maxMessageBytes=16 MiB] largest message received.
   * @param {string} [options.protoDir] where sbx/v1/sandbox.proto is.
   *
   * Authentication (docs/security-model.md), as in the C++ SDK's
   * ClientOptions. Nothing is needed on sbxd's Unix socket; a TCP listener
   * takes a token or a client certificate.
   * @param {string} [options.token=''] bearer token sent with every call as
   *   `authorization: Bearer <token>`, on any channel. On the Unix socket it
   *   makes the calls the token's tenant.
   * @param {boolean} [options.tls=false] connect with TLS (the Unix socket is plain).
   * @param {string|Buffer} [options.tlsCaPem] PEM CA that verifies the server
   *   (unset: the default roots).
   * @param {string|Buffer} [options.tlsCertPem] client certificate chain, for
   *   mTLS; needs tlsKeyPem.
   * @param {string|Buffer} [options.tlsKeyPem] its private key.
   * @param {string} [options.tlsServerName=''] name expected in the server
   *   certificate ('' = the host of the address).
   * The tls* options need tls: true.
   */
  constructor(address, options = {}) {
    const { timeout = 30000, waitForReady = false, maxMessageBytes = 16 << 20, protoDir, token = '' } = options;
    if (timeout !== null && !(timeout > 0)) throw invalidArgument('timeout must be positive');
    this.target = normalizeAddress(address === undefined || address === null ? defaultAddress() : address);
    this._timeout = timeout;
    this._waitForReady = waitForReady;
    checkToken(token);
    const { credentials, options: tlsOptions } = channelCredentials(options);
    const v1 = load(protoDir);
    this._stub = new v1.SandboxService(this.target, credentials, {
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': -1,
      ...tlsOptions,
      interceptors: token ? [bearerToken(token)] : [],
    });
  }

  /** Closes the channel; calls in flight fail. */
  close() {
    this._stub.close();
  }

  /** Resolves once the channel is connected; DEADLINE_EXCEEDED otherwise. */
  waitReady(timeoutMs) {
    return new Promise((resolve, reject) => {
      this._stub.waitForReady(deadlineOf(timeoutMs), (error) => {
        if (!error) resolve();
        else reject(new SbxError(status.DEADLINE_EXCEEDED, `sbxd at ${this.target} not reachable within ${timeoutMs} ms`));
      });
    });
  }

  _callOptions(timeout, unary) {
    const ms = timeout !== undefined ? timeout : (unary ? this._timeout : null);
    const options = { waitForReady: this._waitForReady };
    if (ms !== null && ms !== undefined) options.deadline = deadlineOf(ms);
    return options;
  }

  _unary(method, request, timeout) {
    const options = this._callOptions(timeout, true);
    return new Promise((resolve, reject) => {
      this._stub[method](request, options, (error, response) => {
        if (error) reject(fromServiceError(error));
        else resolve(response);
      });
    });
  }

  // ---- lifecycle ----------------------------------------------------------

  /**
   * Creates a sandbox (RUNNING when this resolves).
   * @param {object} [options] image, memory (bytes or '256M'), cpus, pids,
   *   ttl (ms or '5m'; absent: lives until destroyed), labels, env (default
   *   environment of every exec), timeout (ms, this call's deadline).
   * @returns {Promise<Sandbox>}
   */
  async create(options = {}) {
    const request = {
      image: options.image || '',
      limits: limitsOf(options),
      env: strMap(options.env, 'env'),
      labels: strMap(options.labels, 'labels'),
    };
    if (options.ttl !== undefined && options.ttl !== null) request.ttl = toDuration(options.ttl, 'ttl');
    const response = await this._unary('createSandbox', request, options.timeout);
    return new Sandbox(this, response.sandbox);
  }

  /** The sandbox's state, limits and usage now; NOT_FOUND if unknown. */
  async get(id, { timeout } = {}) {
    const response = await this._unary('getSandbox', { id: requireId(id) }, timeout);
    return new Sandbox(this, response.sandbox);
  }

  /** Every sandbox whose labels include all of `labels` (and in `state`, e.g. 'RUNNING'). */
  async list({ labels, state, timeout } = {}) {
    const request = { labelSelector: strMap(labels, 'labels') };
    if (state) {
      const name = String(state).replace(STATE_PREFIX, '');
      if (!['CREATING', 'RUNNING', 'DEAD', 'DESTROYING'].includes(name)) {
        throw invalidArgument(`state: unknown sandbox state '${state}'`);
      }
      request.state = STATE_PREFIX + name;
    }
    const response = await this._unary('listSandboxes', request, timeout);
    return (response.sandboxes || []).map((m) => new Sandbox(this, m));
  }

  /** Kills everything in the sandbox and removes it. Idempotent: resolves with whether it existed. */
  async destroy(id, { timeout } = {}) {
    const response = await this._unary('destroySandbox', { id: requireId(id) }, timeout);
    return response.existed;
  }

  /** Changes memory / cpus / pids of a live sandbox at once; absent ones stay. */
  async setLimits(id, limits = {}) {
    const request = { id: requireId(id), limits: limitsOf(limits) };
    const response = await this._unary('setLimits', request, limits.timeout);
    return new Sandbox(this, response.sandbox);
  }

  /**
   * Creates a sandbox, passes it to `fn` and destroys it when `fn` settles.
   * @returns {Promise<*>} what `fn` returned
   */
  async withSandbox(options, fn) {
    const box = await this.create(options);
    try {
      return await fn(box);
    } finally {
      await box.destroy();
    }
  }

  // ---- exec ---------------------------------------------------------------

  /**
   * Starts a command and returns its ExecProcess at once (events 'started',
   * 'stdout', 'stderr', 'exit'; write(), closeStdin(), kill(), wait()).
   * @param {string} id
   * @param {string[]} argv argv[0] is looked up in PATH
   * @param {object} [options] env, cwd, user, tty, rows, cols,
   *   timeout (the command's wall-clock limit: ms or '2s', enforced by the
   *   daemon), limits (see execLimitsOf), onStarted, onStdout, onStderr,
   *   onExit (output a callback takes is not collected), deadline (ms: a
   *   client-side deadline of the whole stream).
   */
  spawn(id, argv, options = {}) {
    const start = {
      sandboxId: requireId(id),
      argv: argvOf(argv),
      env: strMap(options.env, 'env'),
      cwd: options.cwd || '',
      user: options.user || '',
      tty: Boolean(options.tty),
    };
    if (start.argv.length === 0) throw invalidArgument('argv is empty');
    if (options.rows || options.cols) start.ttySize = { rows: options.rows || 0, cols: options.cols || 0 };
    if (options.timeout !== undefined && options.timeout !== null) {
      if (parseDurationNs(options.timeout, 'timeout') === 0) throw invalidArgument('exec timeout must be positive');
      start.timeout = toDuration(options.timeout, 'timeout');
    }
    const limits = execLimitsOf(options.limits);
    if (limits) start.limits = limits;
    const call = this._stub.exec(this._callOptions(options.deadline, false));
    call.write({ start });
    return new ExecProcess(call, {
      onStarted: options.onStarted,
      onStdout: options.onStdout,
      onStderr: options.onStderr,
      onExit: options.onExit,
    });
  }

  /**
   * Runs a command to completion: sends `options.stdin` (a Buffer, string,
   * Uint8Array, or an iterable / async iterable / Readable of chunks),
   * closes stdin, and resolves with { stdout, stderr, exit, exitCode, signal,
   * verdict, ok }. A non-zero exit is a result, not an error. Takes the
   * options of spawn().
   */
  async exec(id, argv, options = {}) {
    const proc = this.spawn(id, argv, options);
    const { stdin } = options;
    try {
      if (stdin !== undefined && stdin !== null) {
        if (typeof stdin === 'string' || stdin instanceof Uint8Array) {
          await proc.write(stdin);
        } else if (isStreamLike(stdin)) {
          for await (const chunk of stdin) await proc.write(chunk);
        } else {
          throw invalidArgument('stdin: expected a Buffer, string, or an iterable of chunks');
        }
      }
      await proc.closeStdin();
    } catch (error) {
      if (!(error instanceof SbxError && error.code === status.FAILED_PRECONDITION)) {
        proc.cancel();
        await proc.wait().catch(() => {});
        throw error;
      }
      // The command may exit without reading all its input; wait() reports
      // what really happened.
    }
    return proc.wait();
  }

  // ---- files --------------------------------------------------------------

  /**
   * Writes files, directories and symlinks, in order, in one stream. `files`
   * is an object path -> content (Buffer, string, or an iterable / Readable
   * of chunks) or an array of { path, content, mode, isDir, symlinkTarget }.
   * Relative paths are below /work; missing parents are created.
   * @returns {Promise<{files: number, bytes: number}>}
   */
  async writeFiles(id, files, { user = '', deadline } = {}) {
    requireId(id);
    const entries = fileEntries(files);
    return new Promise((resolve, reject) => {
      let localError = null;
      const call = this._stub.writeFiles(this._callOptions(deadline, false), (error, response) => {
        if (localError) reject(localError);
        else if (error) reject(fromServiceError(error));
        else resolve({ files: response.files, bytes: response.bytes });
      });
      let failed = false;
      call.on('error', () => { failed = true; });
      const send = (message) => new Promise((done) => {
        if (failed) { done(false); return; }
        if (call.write(message)) done(true);
        else {
          const onDrain = () => { call.removeListener('error', onError); done(true); };
          const onError = () => { call.removeListener('drain', onDrain); done(false); };
          call.once('drain', onDrain);
          call.once('error', onError);
        }
      });
      (async () => {
        if (!(await send({ sandboxId: id, user }))) return;
        for (const entry of entries) {
          if (!(await sendFile(send, entry))) return;
        }
        call.end();
      })().catch((error) => {
        localError = error instanceof SbxError ? error : invalidArgument(String(error && error.message));
        call.cancel();
      });
    });
  }

  /** Writes one file. */
  writeFile(id, path, content, { mode = 0, user, deadline } = {}) {
    return this.writeFiles(id, [{ path, content, mode }], { user, deadline });
  }

  /**
   * Streams one regular file: calls onChunk(Buffer) for its content.
   * NOT_FOUND when missing, FAILED_PRECONDITION for a directory or symlink.
   * @returns {Promise<{files: number, bytes: number}>}
   */
  async readFileChunks(id, path, onChunk, { user = '', deadline } = {}) {
    if (typeof onChunk !== 'function') throw invalidArgument('onChunk: expected a function');
    const request = { sandboxId: requireId(id), path, user };
    return new Promise((resolve, reject) => {
      const call = this._stub.readFile(request, this._callOptions(deadline, false));
      let headers = 0;
      let bytes = 0;
      let settled = false;
      const fail = (error) => {
        if (settled) return;
        settled = true;
        reject(error);
      };
      call.on('data', (response) => {
        if (settled) return;
        if (response.msg === 'file') {
          headers += 1;
          if (response.file.isDir || response.file.symlinkTarget || headers > 1) {
            fail(failedPrecondition(`${path} is not a regular file in the sandbox (a directory or a symlink)`));
            call.cancel();
          }
        } else if (response.msg === 'chunk') {
          bytes += response.chunk.length;
          try {
            onChunk(response.chunk);
          } catch (error) {
            fail(error);
            call.cancel();
          }
        }
      });
      call.on('error', (error) => fail(fromServiceError(error)));
      call.on('end', () => {
        if (settled) return;
        if (headers === 0) fail(new SbxError(status.INTERNAL, `no file header for ${path}`));
        settled = true;
        resolve({ files: 1, bytes });
      });
    });
  }

  /** Reads one regular file into a Buffer. */
  async readFile(id, path, options = {}) {
    const chunks = [];
    await this.readFileChunks(id, path, (chunk) => chunks.push(chunk), options);
    return Buffer.concat(chunks);
  }

  // ---- judge --------------------------------------------------------------

  /**
   * Judge one-shot: a fresh sandbox, `files` written into /work,
   * `compileArgv` run once, then `runArgv` once per case. Verdicts are
   * results, not errors. No deadline unless `deadline` (ms).
   * @param {object} options runArgv (required), cases (array of
   *   { stdin, expectedStdout, limits } or plain stdin strings / Buffers),
   *   files, compileArgv, compileLimits, compare ('EXACT' or
   *   'IGNORE_TRAILING_WHITESPACE'), checkerArgv, checkerLimits,
   *   outputCapBytes, image, memory, cpus, pids, env, deadline.
   */
  async run(options = {}) {
    const runArgv = argvOf(options.runArgv || [], 'runArgv');
    if (runArgv.length === 0) throw invalidArgument('runArgv is empty');
    const request = {
      image: options.image || '',
      runArgv,
      compileArgv: argvOf(options.compileArgv || [], 'compileArgv'),
      checkerArgv: argvOf(options.checkerArgv || [], 'checkerArgv'),
      compare: compareOf(options.compare),
      sandboxLimits: limitsOf(options),
      env: strMap(options.env, 'env'),
      files: fileEntries(options.files).map((f) => {
        if (f.isDir || f.symlinkTarget) throw invalidArgument('run: files must be regular files');
        return { path: f.path, content: toBuffer(f.content || '', f.path), mode: f.mode || 0 };
      }),
      cases: (options.cases || []).map((c, i) => {
        const testCase = typeof c === 'string' || c instanceof Uint8Array ? { stdin: c } : c;
        const out = { stdin: toBuffer(testCase.stdin || '', `cases[${i}].stdin`) };
        if (testCase.expectedStdout !== undefined && testCase.expectedStdout !== null) {
          out.expectedStdout = toBuffer(testCase.expectedStdout, `cases[${i}].expectedStdout`);
        }
        if (testCase.limits) out.limits = execLimitsOf(testCase.limits, `cases[${i}].limits`);
        return out;
      }),
    };
    if (options.compileLimits) request.compileLimits = execLimitsOf(options.compileLimits, 'compileLimits');
    if (options.checkerLimits) request.checkerLimits = execLimitsOf(options.checkerLimits, 'checkerLimits');
    if (options.outputCapBytes !== undefined) request.outputCapBytes = parseSize(options.outputCapBytes, 'outputCapBytes');
    const response = await this._unary('run', request, options.deadline === undefined ? null : options.deadline);
    const caseResult = (m) => ({
      verdict: stripPrefix(m.verdict, 'VERDICT_'),
      exit: m.exit ? toExit(m.exit) : null,
      stdout: m.stdout,
      stderr: m.stderr,
      stdoutCapped: m.stdoutCapped,
      checkerOutput: m.checkerOutput,
    });
    return {
      verdict: stripPrefix(response.verdict, 'VERDICT_'),
      compile: response.compile ? caseResult(response.compile) : null,
      cases: (response.cases || []).map(caseResult),
      sandboxId: response.sandboxId,
    };
  }
}

async function sendFile(send, entry) {
  const header = {
    path: entry.path,
    mode: entry.mode || 0,
    isDir: Boolean(entry.isDir),
    symlinkTarget: entry.symlinkTarget || '',
  };
  if (header.isDir || header.symlinkTarget) return send({ file: header });
  const content = entry.content === undefined || entry.content === null ? '' : entry.content;
  if (isStreamLike(content)) {
    if (!(await send({ file: header }))) return false;
    for await (const chunk of content) {
      if (!(await send({ chunk: toBuffer(chunk, entry.path) }))) return false;
    }
    return true;
  }
  const data = toBuffer(content, entry.path);
  header.size = data.length;
  if (!(await send({ file: header }))) return false;
  for (let offset = 0; offset < data.length; offset += CHUNK_BYTES) {
    if (!(await send({ chunk: data.subarray(offset, offset + CHUNK_BYTES) }))) return false;
  }
  return true;
}

/**
 * A sandbox: a snapshot of its state (id, state, image, limits, labels,
 * usage, createdAt, expiresAt, initPid; refresh() renews it) and a handle
 * for calls on it.
 */
class Sandbox {
  constructor(client, message) {
    Object.defineProperty(this, 'client', { value: client, enumerable: false });
    this._update(message);
  }

  _update(m) {
    this.id = m.id;
    this.state = stripPrefix(m.state, STATE_PREFIX);
    this.image = m.image;
    this.limits = {
      memoryBytes: optional(m.limits, 'memoryBytes'),
      cpus: optional(m.limits, 'cpus'),
      pids: optional(m.limits, 'pids'),
    };
    this.labels = { ...(m.labels || {}) };
    const u = m.usage || {};
    this.usage = {
      memoryBytes: u.memoryBytes || 0,
      memoryPeakBytes: u.memoryPeakBytes || 0,
      cpuTimeMs: durationMs(u.cpuTime),
      pids: u.pids || 0,
      oomKills: u.oomKills || 0,
    };
    this.createdAt = timestamp(m.createdAt);
    this.expiresAt = timestamp(m.expiresAt);
    this.initPid = m.initPid;
  }

  async refresh() {
    Object.assign(this, await this.client.get(this.id));
    return this;
  }

  destroy(options) { return this.client.destroy(this.id, options); }

  async setLimits(limits) {
    const box = await this.client.setLimits(this.id, limits);
    Object.assign(this, box);
    return this;
  }

  exec(argv, options) { return this.client.exec(this.id, argv, options); }

  spawn(argv, options) { return this.client.spawn(this.id, argv, options); }

  writeFiles(files, options) { return this.client.writeFiles(this.id, files, options); }

  writeFile(path, content, options) { return this.client.writeFile(this.id, path, content, options); }

  readFile(path, options) { return this.client.readFile(this.id, path, options); }

  readFileChunks(path, onChunk, options) { return this.client.readFileChunks(this.id, path, onChunk, options); }
}

if (typeof Symbol.asyncDispose === 'symbol') {
  // `await using box = await client.create()` where the language has it.
  Sandbox.prototype[Symbol.asyncDispose] = function dispose() { return this.destroy(); };
}

/** A Client for `address` (default: $SBX_SERVER, else /run/sbx/sbxd.sock). */
function connect(address, options) {
  return new Client(address, options);
}

module.exports = { Client, Sandbox, connect, defaultAddress, normalizeAddress, DEFAULT_ADDRESS };
