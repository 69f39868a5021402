'use strict';
// One Exec stream: a command running in a sandbox, as an EventEmitter.
//
// Events, in stream order: 'started' (pid), 'stdout' (Buffer), 'stderr'
// (Buffer), 'exit' (ExecExit). wait() resolves with the ExecResult or
// rejects with an SbxError. write() resolves once gRPC has taken the chunk
// (it waits while the daemon does not take more stdin), so `await
// proc.write(...)` in a loop is back-pressured end to end.

const { EventEmitter } = require('node:events');
const { fromServiceError, failedPrecondition, invalidArgument, SbxError, status } = require('./errors');
const { durationMs } = require('./units');

const STDIN_CHUNK_BYTES = 256 * 1024;

const SIGNALS = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8,
  SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15,
  SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGWINCH: 28,
};

function stripPrefix(value, prefix) {
  return typeof value === 'string' && value.startsWith(prefix) ? value.slice(prefix.length) : value;
}

/** An ExecExit from the wire: times in milliseconds, verdict as 'OK', 'TIME_LIMIT', ... */
function toExit(m) {
  const exit = {
    exitCode: m.exitCode,
    signal: m.signal,
    wallTimeMs: durationMs(m.wallTime),
    cpuTimeMs: durationMs(m.cpuTime),
    timedOut: m.timedOut,
    verdict: stripPrefix(m.verdict, 'VERDICT_'),
    memoryPeakBytes: m.memoryPeakBytes,
    oomKilled: m.oomKilled,
    outputTruncated: m.outputTruncated,
    cpuTimeExceeded: m.cpuTimeExceeded,
  };
  // Like a shell: the exit code, or 128 + N for signal N.
  exit.returnCode = exit.signal ? 128 + exit.signal : exit.exitCode;
  return exit;
}

function toBuffer(data, what) {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data);
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgument(`${what}: expected a Buffer, Uint8Array or string, got ${typeof data}`);
}

function signalNumber(signal) {
  const n = typeof signal === 'string' ? SIGNALS[signal.toUpperCase()] : signal;
  if (!Number.isInteger(n) || n <= 0 || n >= 65) throw invalidArgument(`invalid signal ${signal}`);
  return n;
}

class ExecProcess extends EventEmitter {
  /**
   * Made by Client.spawn(). `call` is the grpc-js duplex stream with the
   * start message already written; `handlers` are the onStarted, onStdout,
   * onStderr and onExit callbacks (output a callback takes is not collected).
   */
  constructor(call, handlers) {
    super();
    this._call = call;
    this._handlers = handlers;
    this._stdout = [];
    this._stderr = [];
    this._exit = null;
    this._error = null;
    this._done = false;
    this._stdinClosed = false;
    this._writeChain = Promise.resolve();
    this.pid = null;
    this._result = new Promise((resolve, reject) => {
      this._settle = () => (this._error ? reject(this._error) : resolve(this._makeResult()));
    });
    this._result.catch(() => {});  // reported by wait(); never an unhandled rejection
    call.on('data', (response) => this._onData(response));
    // A failed call emits 'error'; a call that ended OK ends its readable
    // side, and 'end' comes only after every 'data' has been handled.
    call.on('error', (error) => this._finish(fromServiceError(error)));
    call.on('end', () => this._finish(null));
  }

  _onData(response) {
    if (this._done) return;
    try {
      switch (response.msg) {
        case 'started':
          this.pid = response.started.pid;
          if (this._handlers.onStarted) this._handlers.onStarted(this.pid);
          this.emit('started', this.pid);
          break;
        case 'stdout':
          if (this._handlers.onStdout) this._handlers.onStdout(response.stdout);
          else this._stdout.push(response.stdout);
          this.emit('stdout', response.stdout);
          break;
        case 'stderr':
          if (this._handlers.onStderr) this._handlers.onStderr(response.stderr);
          else this._stderr.push(response.stderr);
          this.emit('stderr', response.stderr);
          break;
        case 'exit':
          this._exit = toExit(response.exit);
          if (this._handlers.onExit) this._handlers.onExit(this._exit);
          this.emit('exit', this._exit);
          break;
        default:
          break;  // a newer daemon's message kind: ignored, as proto3 intends
      }
    } catch (error) {
      // A callback threw: stop the command, and let wait() report it.
      this._callbackError = error;
      this._call.cancel();
      this._finish(error);
    }
  }

  _finish(error) {
    if (this._done) return;
    this._done = true;
    if (this._callbackError) {
      this._error = this._callbackError;
    } else if (this._exit) {
      this._error = null;  // an exit that arrived wins over a late stream error
    } else {
      this._error = error || new SbxError(status.INTERNAL, 'exec stream ended without an exit message');
    }
    this._call.end();
    this._settle();
    this.emit('done', this._error);
  }

  _makeResult() {
    const exit = this._exit;
    return {
      stdout: Buffer.concat(this._stdout),
      stderr: Buffer.concat(this._stderr),
      exit,
      exitCode: exit.exitCode,
      signal: exit.signal,
      verdict: exit.verdict,
      ok: exit.verdict === 'OK',
    };
  }

  /** True once the stream has ended. */
  get done() {
    return this._done;
  }

  // Writes go one after another through _writeChain, so chunks keep their
  // order whoever calls.
  _send(message) {
    const next = this._writeChain.then(() => new Promise((resolve, reject) => {
      if (this._done) {
        reject(failedPrecondition('exec stream is closed (the command has finished or the call failed)'));
        return;
      }
      const onDone = () => reject(failedPrecondition('exec stream is closed (the command has finished or the call failed)'));
      this.once('done', onDone);
      this._call.write(message, () => {
        this.removeListener('done', onDone);
        resolve();
      });
    }));
    this._writeChain = next.catch(() => {});
    return next;
  }

  /** Sends stdin (a Buffer, Uint8Array or string) in 256 KiB chunks. */
  async write(data) {
    const buffer = toBuffer(data, 'stdin');
    if (this._stdinClosed) throw failedPrecondition('stdin is already closed');
    for (let offset = 0; offset < buffer.length; offset += STDIN_CHUNK_BYTES) {
      await this._send({ stdin: buffer.subarray(offset, offset + STDIN_CHUNK_BYTES) });
    }
  }

  /** EOF on the command's stdin. Idempotent. */
  async closeStdin() {
    if (this._stdinClosed) return;
    this._stdinClosed = true;
    await this._send({ stdinClose: true });
  }

  /** Alias of closeStdin(), as for a writable stream. */
  end() {
    return this.closeStdin();
  }

  /** Delivers a signal ('SIGTERM' or 15) to the command's process group. */
  kill(signal = 'SIGTERM') {
    return this._send({ signal: signalNumber(signal) });
  }

  /** New terminal size of a tty exec. */
  resize(rows, cols) {
    if (!(rows >= 1 && cols >= 1)) throw invalidArgument('tty size must be at least 1x1');
    return this._send({ resize: { rows, cols } });
  }

  /** Cancels the call; the daemon kills the command. */
  cancel() {
    this._call.cancel();
  }

  /**
   * Resolves with { stdout, stderr, exit, exitCode, signal, verdict, ok }
   * (stdout / stderr hold what no callback took); rejects with the stream's
   * SbxError (NOT_FOUND for an unknown sandbox, CANCELLED after cancel(), ...)
   * or what a callback threw.
   */
  wait() {
    return this._result;
  }
}

module.exports = { ExecProcess, toExit, toBuffer, stripPrefix, STDIN_CHUNK_BYTES };
