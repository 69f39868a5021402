"""One Exec stream: a command running in a sandbox.

grpcio drives the bidi stream with two threads of its own making: one pulls
requests from an iterator (our _Outbox) and sends them one at a time, one
message in flight; our reader thread walks the responses and calls the
callbacks. The outbox holds at most a few chunks, so write() blocks while the
daemon does not take more stdin: back-pressure reaches the caller.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Optional, Union

import grpc

from ._errors import from_rpc_error, invalid_argument, make_error
from ._proto import pb
from ._types import ExecExit, ExecResult

__all__ = ["ExecCall", "STDIN_CHUNK_BYTES"]

STDIN_CHUNK_BYTES = 256 * 1024
_OUTBOX_ITEMS = 8


class _Outbox:
    """A bounded queue that is also the request iterator of the stream."""

    def __init__(self, first: pb.ExecRequest):
        self._cv = threading.Condition()
        self._items = collections.deque([first])
        self._dead = False

    def put(self, request: pb.ExecRequest) -> bool:
        """Blocks while full; False once the stream has ended."""
        with self._cv:
            while len(self._items) >= _OUTBOX_ITEMS and not self._dead:
                self._cv.wait()
            if self._dead:
                return False
            self._items.append(request)
            self._cv.notify_all()
            return True

    def kill(self) -> None:
        """The stream ended: drop what is queued and end the iterator."""
        with self._cv:
            self._dead = True
            self._items.clear()
            self._cv.notify_all()

    def __iter__(self):
        while True:
            with self._cv:
                while not self._items and not self._dead:
                    self._cv.wait()
                if self._dead:
                    return
                request = self._items.popleft()
                self._cv.notify_all()
            yield request


class ExecCall:
    """A running command; made by Client.spawn() / Sandbox.spawn().

    write(), close_stdin(), signal() and resize() may be called from any
    thread; after the stream has ended they raise FailedPreconditionError.
    Callbacks run on the call's reader thread, one at a time and in stream
    order; an exception in one cancels the call and is raised by wait().
    Use it as a context manager to cancel a command you stop caring about.
    """

    def __init__(self, stub, start: pb.ExecRequest, *, rpc_timeout: Optional[float],
                 wait_for_ready: bool,
                 on_started: Optional[Callable[[int], None]] = None,
                 on_stdout: Optional[Callable[[bytes], None]] = None,
                 on_stderr: Optional[Callable[[bytes], None]] = None,
                 on_exit: Optional[Callable[[ExecExit], None]] = None):
        self._on_started = on_started
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._on_exit = on_exit
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._pid: Optional[int] = None
        self._exit: Optional[ExecExit] = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._write_lock = threading.Lock()
        self._stdin_closed = False
        self._outbox = _Outbox(start)
        self._call = stub.Exec(iter(self._outbox), timeout=rpc_timeout,
                               wait_for_ready=wait_for_ready)
        self._reader = threading.Thread(target=self._read_loop, name="sbx-exec-reader",
                                        daemon=True)
        self._reader.start()

    # ---- writing -------------------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Sends stdin (a str is UTF-8 encoded), in chunks of 256 KiB; blocks
        while the daemon does not take more."""
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise invalid_argument(f"stdin: expected bytes or str, got {type(data).__name__}")
        view = memoryview(data).cast("B")
        with self._write_lock:
            if self._stdin_closed:
                raise make_error(grpc.StatusCode.FAILED_PRECONDITION, "stdin is already closed")
            for offset in range(0, len(view), STDIN_CHUNK_BYTES):
                self._send(pb.ExecRequest(stdin=bytes(view[offset:offset + STDIN_CHUNK_BYTES])))

    def close_stdin(self) -> None:
        """EOF on the command's stdin. Idempotent."""
        with self._write_lock:
            if self._stdin_closed:
                return
            self._send(pb.ExecRequest(stdin_close=True))
            self._stdin_closed = True

    def signal(self, signo: int) -> None:
        """Delivers a signal (an int or a signal.Signals) to the command's
        process group."""
        signo = int(signo)
        if not 0 < signo < 65:
            raise invalid_argument(f"invalid signal {signo}")
        with self._write_lock:
            self._send(pb.ExecRequest(signal=signo))

    def resize(self, rows: int, cols: int) -> None:
        """New terminal size of a tty exec."""
        if rows < 1 or cols < 1:
            raise invalid_argument("tty size must be at least 1x1")
        with self._write_lock:
            self._send(pb.ExecRequest(resize=pb.TtySize(rows=rows, cols=cols)))

    def _send(self, request: pb.ExecRequest) -> None:
        if self._done.is_set() or not self._outbox.put(request):
            raise make_error(grpc.StatusCode.FAILED_PRECONDITION,
                             "exec stream is closed (the command has finished or the call failed)")

    # ---- the outcome ---------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The command's pid inside the sandbox, once it has started."""
        return self._pid

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> ExecResult:
        """Blocks until the stream ends and returns the result; raises the
        stream's SbxError (NOT_FOUND for an unknown sandbox, CANCELLED after
        cancel(), ...) or what a callback raised. TimeoutError if `timeout`
        seconds pass first (the command keeps running)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"exec did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._exit is not None
        return ExecResult(bytes(self._stdout), bytes(self._stderr), self._exit)

    def cancel(self) -> None:
        """Cancels the call; the daemon kills the command. Idempotent."""
        self._call.cancel()

    def __enter__(self) -> "ExecCall":
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.done():
            self.cancel()
            self._done.wait()

    # ---- the reader thread --------------------------------------------

    def _read_loop(self) -> None:
        exit_message: Optional[ExecExit] = None
        error: Optional[BaseException] = None
        callback_failed = False
        try:
            for response in self._call:
                exit_message = self._dispatch(response) or exit_message
        except grpc.RpcError as rpc_error:
            error = from_rpc_error(rpc_error)
        except BaseException as callback_error:  # noqa: BLE001 - re-raised by wait()
            error, callback_failed = callback_error, True
            self._call.cancel()
        finally:
            self._outbox.kill()
        if exit_message is not None and not callback_failed:
            error = None  # an exit that arrived wins over a late stream error
        elif error is None:
            error = make_error(grpc.StatusCode.INTERNAL,
                               "exec stream ended without an exit message")
        self._exit = exit_message
        self._error = error
        self._done.set()

    def _dispatch(self, response: pb.ExecResponse) -> Optional[ExecExit]:
        kind = response.WhichOneof("msg")
        if kind == "started":
            self._pid = response.started.pid
            if self._on_started:
                self._on_started(self._pid)
        elif kind == "stdout":
            if self._on_stdout:
                self._on_stdout(response.stdout)
            else:
                self._stdout += response.stdout
        elif kind == "stderr":
            if self._on_stderr:
                self._on_stderr(response.stderr)
            else:
                self._stderr += response.stderr
        elif kind == "exit":
            exit_message = ExecExit.from_proto(response.exit)
            if self._on_exit:
                self._on_exit(exit_message)
            return exit_message
        return None  # a newer daemon's message kind: ignored, as proto3 intends
