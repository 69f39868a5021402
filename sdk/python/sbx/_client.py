"""Client and Sandbox: the sbx.v1.SandboxService calls with Python values."""

from __future__ import annotations

import os
import re
from typing import (IO, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Union)

import grpc

from ._auth import BearerToken, Pem, channel_credentials, check_token
from ._errors import SbxError, from_rpc_error, invalid_argument, make_error
from ._exec import ExecCall
from ._proto import pb, pb_grpc
from ._types import (Compare, ExecExit, ExecLimits, ExecResult, File, Limits, RunResult,
                     SandboxState, TestCase, TransferResult, sandbox_fields, set_duration,
                     to_bytes)
from ._units import Duration, Size, parse_duration_ns, parse_size

__all__ = ["DEFAULT_ADDRESS", "default_address", "normalize_address", "connect", "Client",
           "Sandbox"]

DEFAULT_ADDRESS = "unix:///run/sbx/sbxd.sock"
CHUNK_BYTES = 256 * 1024

Stdin = Union[None, bytes, bytearray, memoryview, str, Iterable[Union[bytes, str]]]
Files = Union[Mapping[str, Union[bytes, str, IO[bytes]]], Iterable[File]]


def default_address() -> str:
    """$SBX_SERVER when set and non-empty, else the daemon's default socket."""
    return os.environ.get("SBX_SERVER") or DEFAULT_ADDRESS


def normalize_address(address: str) -> str:
    """A gRPC target from what a user writes:
    "/run/x.sock", "./x.sock" -> "unix:/run/x.sock", ...; "unix:..." and
    "host:port" (also dns:, ipv4:, ipv6:, unix-abstract:) unchanged."""
    if not address:
        raise invalid_argument("invalid server address \"\": empty "
                               "(expected unix:///path, /path or host:port)")
    if address.startswith("unix:"):
        path = address[5:]
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise invalid_argument(f"invalid server address {address!r}: "
                                       "unix:// needs an absolute path")
        if not path:
            raise invalid_argument(f"invalid server address {address!r}: no socket path")
        return address
    if address.startswith(("/", "./", "../")):
        return "unix:" + address
    if address.startswith(("dns:", "ipv4:", "ipv6:", "unix-abstract:")):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise invalid_argument(f"invalid server address {address!r}: no port "
                               "(expected unix:///path, /path or host:port)")
    if not re.fullmatch(r"\d{1,5}", port):
        raise invalid_argument(f"invalid server address {address!r}: bad port")
    return address


def connect(address: Optional[str] = None, **options) -> "Client":
    """A Client for `address` (default: $SBX_SERVER, else /run/sbx/sbxd.sock).
    See Client for the options."""
    return Client(address, **options)


def _require_id(sandbox_id: str) -> str:
    if not isinstance(sandbox_id, str) or not sandbox_id:
        raise invalid_argument("sandbox id is empty")
    return sandbox_id


def _str_map(values: Optional[Mapping[str, str]], what: str) -> Dict[str, str]:
    out = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise invalid_argument(f"{what}: keys and values must be str, got {key!r}={value!r}")
        out[key] = value
    return out


def _argv(argv: Sequence[str], what: str = "argv") -> List[str]:
    if isinstance(argv, (str, bytes)):
        raise invalid_argument(f"{what}: expected a list of strings, got a single string")
    out = list(argv)
    if not all(isinstance(a, str) for a in out):
        raise invalid_argument(f"{what}: every argument must be a str")
    return out


class Client:
    """A connection to one sbxd. Thread-safe; use it as a context manager (or
    call close()) to release the channel.

    Options:
        timeout: deadline in seconds of each unary call (default 30; None: none).
            exec(), spawn(), file transfers and run() have none unless given.
        wait_for_ready: when False (gRPC's default) a call fails at once with
            UNAVAILABLE if the daemon cannot be reached; when True it waits
            up to its deadline.
        max_message_bytes: largest message received (default 16 MiB).
        channel_options: more gRPC channel arguments, as (name, value) pairs.

    Authentication (docs/security-model.md), as in the C++ SDK's
    ClientOptions. Nothing is needed on sbxd's Unix socket; a TCP listener
    takes a token or a client certificate.
        token: bearer token sent with every call as `authorization: Bearer
            <token>`, on any channel ("" = none). On the Unix socket it makes
            the calls the token's tenant.
        tls: connect with TLS (off by default: the Unix socket is plain).
        tls_ca_pem: PEM CA that verifies the server (str or bytes; None: the
            default roots).
        tls_cert_pem, tls_key_pem: client certificate chain and its key, for
            mTLS; both or neither.
        tls_server_name: name expected in the server certificate ("" = the
            host of the address).
    The tls_* options need tls=True.
    """

    def __init__(self, address: Optional[str] = None, *, timeout: Optional[float] = 30.0,
                 wait_for_ready: bool = False, max_message_bytes: int = 16 << 20,
                 channel_options: Sequence[tuple] = (), token: str = "", tls: bool = False,
                 tls_ca_pem: Pem = None, tls_cert_pem: Pem = None, tls_key_pem: Pem = None,
                 tls_server_name: str = ""):
        if timeout is not None and timeout <= 0:
            raise invalid_argument("timeout must be positive")
        self.target = normalize_address(address if address is not None else default_address())
        self._timeout = timeout
        self._wait_for_ready = wait_for_ready
        check_token(token)
        credentials, tls_options = channel_credentials(tls, tls_ca_pem, tls_cert_pem,
                                                       tls_key_pem, tls_server_name)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            *tls_options,
            *channel_options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.target, credentials, options=options)
        if token:
            # Wraps the channel: close() and wait_ready() still reach it.
            self._channel = grpc.intercept_channel(self._channel, BearerToken(token))
        self._stub = pb_grpc.SandboxServiceStub(self._channel)

    # ---- the connection --------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"sbx.Client({self.target!r})"

    def wait_ready(self, timeout: float) -> None:
        """Waits until the channel is connected; DeadlineExceededError otherwise."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise make_error(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"sbxd at {self.target} not reachable within {timeout} s") from None

    def _unary(self, method: Callable, request, timeout):
        deadline = self._timeout if timeout is None else timeout
        try:
            return method(request, timeout=deadline, wait_for_ready=self._wait_for_ready)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    # ---- lifecycle -------------------------------------------------------

    def create(self, image: str = "", *, memory: Optional[Size] = None,
               cpus: Optional[float] = None, pids: Optional[int] = None,
               ttl: Optional[Duration] = None, labels: Optional[Mapping[str, str]] = None,
               env: Optional[Mapping[str, str]] = None,
               timeout: Optional[float] = None) -> "Sandbox":
        """Creates a sandbox (RUNNING when this returns). memory takes bytes or
        "256M"; ttl seconds or "5m" (None: lives until destroyed); env is the
        default environment of every exec. Unset limits take the daemon's
        defaults."""
        request = pb.CreateSandboxRequest(image=image, env=_str_map(env, "env"),
                                          labels=_str_map(labels, "labels"))
        Limits.build(memory, cpus, pids).to_proto(request.limits)
        if ttl is not None:
            set_duration(request.ttl, ttl, "ttl")
        response = self._unary(self._stub.CreateSandbox, request, timeout)
        return Sandbox(self, response.sandbox)

    def get(self, sandbox_id: str, *, timeout: Optional[float] = None) -> "Sandbox":
        """The sandbox's state, limits and usage now; NotFoundError if unknown."""
        request = pb.GetSandboxRequest(id=_require_id(sandbox_id))
        return Sandbox(self, self._unary(self._stub.GetSandbox, request, timeout).sandbox)

    def sandbox(self, sandbox_id: str) -> "Sandbox":
        """Alias of get(): a handle on an existing sandbox."""
        return self.get(sandbox_id)

    def list(self, labels: Optional[Mapping[str, str]] = None,
             state: Union[SandboxState, str, None] = None, *,
             timeout: Optional[float] = None) -> List["Sandbox"]:
        """Every sandbox whose labels include all of `labels` (and in `state`)."""
        if isinstance(state, str):
            try:
                state = SandboxState[state.upper()]
            except KeyError:
                raise invalid_argument(f"state: unknown sandbox state {state!r}") from None
        request = pb.ListSandboxesRequest(label_selector=_str_map(labels, "labels"),
                                          state=int(state or 0))
        response = self._unary(self._stub.ListSandboxes, request, timeout)
        return [Sandbox(self, m) for m in response.sandboxes]

    def destroy(self, sandbox_id: str, *, timeout: Optional[float] = None) -> bool:
        """Kills everything in the sandbox and removes it. Idempotent: returns
        whether it existed."""
        request = pb.DestroySandboxRequest(id=_require_id(sandbox_id))
        return self._unary(self._stub.DestroySandbox, request, timeout).existed

    def set_limits(self, sandbox_id: str, *, memory: Optional[Size] = None,
                   cpus: Optional[float] = None, pids: Optional[int] = None,
                   timeout: Optional[float] = None) -> "Sandbox":
        """Changes limits of a live sandbox at once; None leaves one as it is.
        Returns the sandbox with its new effective limits."""
        request = pb.SetLimitsRequest(id=_require_id(sandbox_id))
        Limits.build(memory, cpus, pids).to_proto(request.limits)
        return Sandbox(self, self._unary(self._stub.SetLimits, request, timeout).sandbox)

    # ---- exec ------------------------------------------------------------

    def spawn(self, sandbox_id: str, argv: Sequence[str], *,
              env: Optional[Mapping[str, str]] = None, cwd: str = "", user: str = "",
              tty: bool = False, rows: int = 0, cols: int = 0,
              timeout: Optional[Duration] = None, limits: Optional[ExecLimits] = None,
              on_started: Optional[Callable[[int], None]] = None,
              on_stdout: Optional[Callable[[bytes], None]] = None,
              on_stderr: Optional[Callable[[bytes], None]] = None,
              on_exit: Optional[Callable[[ExecExit], None]] = None,
              rpc_timeout: Optional[float] = None) -> ExecCall:
        """Starts a command and returns at once with its ExecCall: write stdin,
        close it, send signals, then wait(). Output a callback takes is not
        collected. `timeout` is the command's wall-clock limit, enforced by the
        daemon (verdict WALL_TIME_LIMIT); `rpc_timeout` a client-side deadline
        of the whole stream. Errors of the daemon (unknown sandbox, ...) come
        from wait()."""
        start = pb.ExecStart(sandbox_id=_require_id(sandbox_id), argv=_argv(argv),
                             env=_str_map(env, "env"), cwd=cwd, user=user, tty=tty)
        if not start.argv:
            raise invalid_argument("argv is empty")
        if rows or cols:
            start.tty_size.rows, start.tty_size.cols = rows, cols
        if timeout is not None:
            if parse_duration_ns(timeout, "timeout") == 0:
                raise invalid_argument("exec timeout must be positive")
            set_duration(start.timeout, timeout, "timeout")
        if limits is not None:
            limits.to_proto(start.limits)
        return ExecCall(self._stub, pb.ExecRequest(start=start), rpc_timeout=rpc_timeout,
                        wait_for_ready=self._wait_for_ready, on_started=on_started,
                        on_stdout=on_stdout, on_stderr=on_stderr, on_exit=on_exit)

    def exec(self, sandbox_id: str, argv: Sequence[str], *, stdin: Stdin = None,
             **options) -> ExecResult:
        """Runs a command to completion: sends `stdin` (bytes, str, or an
        iterable of chunks, streamed as it is consumed), closes it, and returns
        stdout, stderr (those no callback took) and the exit. A non-zero exit
        is a result, not an error. Takes the options of spawn()."""
        call = self.spawn(sandbox_id, argv, **options)
        try:
            if stdin is not None:
                chunks = [stdin] if isinstance(stdin, (bytes, bytearray, memoryview, str)) \
                    else stdin
                for chunk in chunks:
                    call.write(chunk)
            call.close_stdin()
        except SbxError:
            # The command may exit without reading all its input; wait()
            # reports what really happened (and raises if the call failed).
            pass
        except BaseException:
            call.cancel()
            raise
        return call.wait()

    # ---- files -----------------------------------------------------------

    def write_files(self, sandbox_id: str, files: Files, *, user: str = "",
                    rpc_timeout: Optional[float] = None) -> TransferResult:
        """Writes files, directories and symlinks, in order, in one stream.
        `files` is a mapping path -> content (bytes, str or a binary file
        object) or an iterable of File. Relative paths are below /work;
        missing parents are created."""
        entries = [File(p, c) for p, c in files.items()] if isinstance(files, Mapping) \
            else list(files)
        for entry in entries:
            if not isinstance(entry, File):
                raise invalid_argument(f"files: expected File entries, got {entry!r}")
            if not isinstance(entry.path, str) or not entry.path:
                raise invalid_argument("files: a path is empty")
        local_error: List[BaseException] = []

        def requests() -> Iterator[pb.WriteFilesRequest]:
            try:
                yield pb.WriteFilesRequest(sandbox_id=_require_id(sandbox_id), user=user)
                for entry in entries:
                    yield from _file_requests(entry)
            except BaseException as error:  # reported instead of grpc's CANCELLED
                local_error.append(error)
                raise

        try:
            response = self._stub.WriteFiles(requests(), timeout=rpc_timeout,
                                             wait_for_ready=self._wait_for_ready)
        except grpc.RpcError as error:
            if local_error:
                raise local_error[0] from None
            raise from_rpc_error(error) from None
        return TransferResult(response.files, response.bytes)

    def write_file(self, sandbox_id: str, path: str, content: Union[bytes, str, IO[bytes]],
                   *, mode: int = 0, user: str = "",
                   rpc_timeout: Optional[float] = None) -> TransferResult:
        """Writes one file."""
        return self.write_files(sandbox_id, [File(path, content, mode)], user=user,
                                rpc_timeout=rpc_timeout)

    def read_file_to(self, sandbox_id: str, path: str, out: IO[bytes], *, user: str = "",
                     rpc_timeout: Optional[float] = None) -> TransferResult:
        """Streams one regular file into the binary file object `out`.
        NotFoundError when missing, FailedPreconditionError for a directory."""
        request = pb.ReadFileRequest(sandbox_id=_require_id(sandbox_id), path=path, user=user)
        stream = self._stub.ReadFile(request, timeout=rpc_timeout,
                                     wait_for_ready=self._wait_for_ready)
        total, headers = 0, 0
        try:
            for response in stream:
                kind = response.WhichOneof("msg")
                if kind == "file":
                    headers += 1
                    header = response.file
                    if header.is_dir or header.symlink_target or headers > 1:
                        stream.cancel()
                        raise make_error(grpc.StatusCode.FAILED_PRECONDITION,
                                         f"{path} is not a regular file in the sandbox"
                                         " (a directory or a symlink)")
                elif kind == "chunk":
                    out.write(response.chunk)
                    total += len(response.chunk)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        if headers == 0:
            raise make_error(grpc.StatusCode.INTERNAL, f"no file header for {path}")
        return TransferResult(1, total)

    def read_file(self, sandbox_id: str, path: str, *, user: str = "",
                  rpc_timeout: Optional[float] = None) -> bytes:
        """Reads one regular file into memory."""
        buffer = _Buffer()
        self.read_file_to(sandbox_id, path, buffer, user=user, rpc_timeout=rpc_timeout)
        return bytes(buffer.data)

    # ---- judge -----------------------------------------------------------

    def run(self, run_argv: Sequence[str], cases: Iterable[Union[TestCase, bytes, str]] = (),
            *, files: Optional[Files] = None, compile_argv: Optional[Sequence[str]] = None,
            compile_limits: Optional[ExecLimits] = None, compare: Compare = Compare.EXACT,
            checker_argv: Optional[Sequence[str]] = None,
            checker_limits: Optional[ExecLimits] = None,
            output_cap_bytes: Optional[Size] = None, image: str = "",
            memory: Optional[Size] = None, cpus: Optional[float] = None,
            pids: Optional[int] = None, env: Optional[Mapping[str, str]] = None,
            rpc_timeout: Optional[float] = None) -> RunResult:
        """Judge one-shot: a fresh sandbox (memory / cpus / pids), `files`
        written into /work, `compile_argv` run once, then `run_argv` once per
        case (a TestCase, or just its stdin). Verdicts are results, not
        errors. No deadline unless `rpc_timeout`."""
        request = pb.RunRequest(image=image, run_argv=_argv(run_argv, "run_argv"),
                                compare=int(compare), env=_str_map(env, "env"))
        if not request.run_argv:
            raise invalid_argument("run_argv is empty")
        if compile_argv:
            request.compile_argv.extend(_argv(compile_argv, "compile_argv"))
        if checker_argv:
            request.checker_argv.extend(_argv(checker_argv, "checker_argv"))
        if compile_limits is not None:
            compile_limits.to_proto(request.compile_limits, "compile_limits")
        if checker_limits is not None:
            checker_limits.to_proto(request.checker_limits, "checker_limits")
        if output_cap_bytes is not None:
            request.output_cap_bytes = parse_size(output_cap_bytes, "output_cap_bytes")
        Limits.build(memory, cpus, pids).to_proto(request.sandbox_limits)
        entries = [File(p, c) for p, c in files.items()] if isinstance(files, Mapping) \
            else list(files or [])
        for entry in entries:
            if entry.is_dir or entry.symlink_target:
                raise invalid_argument("run: files must be regular files")
            request.files.add(path=entry.path, content=_read_all(entry.content), mode=entry.mode)
        for i, case in enumerate(cases):
            if not isinstance(case, TestCase):
                case = TestCase(stdin=case)
            case.to_proto(request.cases.add(), f"cases[{i}]")
        try:
            response = self._stub.Run(request, timeout=rpc_timeout,
                                      wait_for_ready=self._wait_for_ready)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return RunResult.from_proto(response)


class _Buffer:
    def __init__(self):
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)


def _read_all(content) -> bytes:
    if hasattr(content, "read"):
        return to_bytes(content.read(), "file content")
    return to_bytes(content, "file content")


def _file_requests(entry: File) -> Iterator[pb.WriteFilesRequest]:
    header = pb.FileHeader(path=entry.path, mode=entry.mode, is_dir=entry.is_dir,
                           symlink_target=entry.symlink_target)
    if entry.is_dir or entry.symlink_target:
        yield pb.WriteFilesRequest(file=header)
        return
    content = entry.content
    if hasattr(content, "read"):
        yield pb.WriteFilesRequest(file=header)
        while True:
            chunk = content.read(CHUNK_BYTES)
            if not chunk:
                return
            yield pb.WriteFilesRequest(chunk=to_bytes(chunk, entry.path))
    data = to_bytes(content, entry.path)
    header.size = len(data)
    yield pb.WriteFilesRequest(file=header)
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK_BYTES):
        yield pb.WriteFilesRequest(chunk=bytes(view[offset:offset + CHUNK_BYTES]))


class Sandbox:
    """A sandbox: a snapshot of its state (id, state, image, limits, labels,
    usage, created_at, expires_at, init_pid; refresh() renews it) and a handle
    for calls on it. As a context manager it destroys the sandbox on exit."""

    id: str
    state: SandboxState
    image: str
    limits: Limits
    labels: Dict[str, str]
    usage: object
    created_at: object
    expires_at: object
    init_pid: int

    def __init__(self, client: Client, message):
        self.client = client
        self._update(message)

    def _update(self, message) -> None:
        self.proto = message
        self.__dict__.update(sandbox_fields(message))

    def __repr__(self) -> str:
        return f"<sbx.Sandbox {self.id} {self.state.name}>"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info) -> None:
        self.destroy()

    def refresh(self) -> "Sandbox":
        self._update(self.client.get(self.id).proto)
        return self

    def destroy(self) -> bool:
        return self.client.destroy(self.id)

    def set_limits(self, **limits) -> "Sandbox":
        self._update(self.client.set_limits(self.id, **limits).proto)
        return self

    def exec(self, argv: Sequence[str], **options) -> ExecResult:
        return self.client.exec(self.id, argv, **options)

    def spawn(self, argv: Sequence[str], **options) -> ExecCall:
        return self.client.spawn(self.id, argv, **options)

    def write_files(self, files: Files, **options) -> TransferResult:
        return self.client.write_files(self.id, files, **options)

    def write_file(self, path: str, content, **options) -> TransferResult:
        return self.client.write_file(self.id, path, content, **options)

    def read_file(self, path: str, **options) -> bytes:
        return self.client.read_file(self.id, path, **options)

    def read_file_to(self, path: str, out: IO[bytes], **options) -> TransferResult:
        return self.client.read_file_to(self.id, path, out, **options)
