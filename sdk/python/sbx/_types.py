"""Plain Python values for what the API takes and returns.

Results are frozen dataclasses built from the proto messages; each keeps the
message it came from in `.proto` for fields this wrapper does not surface.
Durations come back as float seconds, timestamps as aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import IO, Dict, List, Optional, Union

from ._errors import invalid_argument
from ._units import Duration, Size, parse_duration_ns, parse_size

__all__ = [
    "SandboxState",
    "Verdict",
    "Compare",
    "Limits",
    "Usage",
    "ExecExit",
    "ExecResult",
    "ExecLimits",
    "File",
    "TransferResult",
    "TestCase",
    "CaseResult",
    "RunResult",
]


class _NamedIntEnum(enum.IntEnum):
    """An IntEnum that prints as its name (RUNNING, TIME_LIMIT)."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)


class SandboxState(_NamedIntEnum):
    """sbx.v1.SandboxState without its prefix (UNSPECIFIED for a value this
    client does not know)."""

    UNSPECIFIED = 0
    CREATING = 1
    RUNNING = 2
    DEAD = 3  # its init died; it only awaits destroy()
    DESTROYING = 4

    @classmethod
    def _missing_(cls, value):
        return cls.UNSPECIFIED


class Verdict(_NamedIntEnum):
    """sbx.v1.Verdict without its prefix: the outcome of an exec or a run case
    (UNSPECIFIED for a value this client does not know)."""

    UNSPECIFIED = 0
    OK = 1
    RUNTIME_ERROR = 2  # non-zero exit
    SIGNALED = 3
    TIME_LIMIT = 4  # cpu time
    WALL_TIME_LIMIT = 5
    MEMORY_LIMIT = 6
    OUTPUT_LIMIT = 7
    WRONG_ANSWER = 8
    COMPILE_ERROR = 9
    INTERNAL_ERROR = 10

    @classmethod
    def _missing_(cls, value):
        return cls.UNSPECIFIED


class Compare(_NamedIntEnum):
    """How run() compares a case's stdout with its expected output."""

    EXACT = 1
    IGNORE_TRAILING_WHITESPACE = 2


def _seconds(duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _set_duration(message, value: Duration, what: str) -> None:
    ns = parse_duration_ns(value, what)
    message.seconds, message.nanos = divmod(ns, 10**9)


def _timestamp(message, present: bool) -> Optional[datetime.datetime]:
    if not present:
        return None
    return datetime.datetime.fromtimestamp(message.seconds, tz=datetime.timezone.utc) + \
        datetime.timedelta(microseconds=message.nanos // 1000)


def _bytes(value: Union[bytes, bytearray, memoryview, str], what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise invalid_argument(f"{what}: expected bytes or str, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Limits of a sandbox; None means the daemon's default (create) or unchanged."""

    memory_bytes: Optional[int] = None
    cpus: Optional[float] = None
    pids: Optional[int] = None

    @classmethod
    def build(cls, memory: Optional[Size], cpus: Optional[float],
              pids: Optional[int]) -> "Limits":
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float))):
            raise invalid_argument(f"cpus: expected a number, got {cpus!r}")
        if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int)):
            raise invalid_argument(f"pids: expected an int, got {pids!r}")
        return cls(None if memory is None else parse_size(memory, "memory"),
                   None if cpus is None else float(cpus), pids)

    def to_proto(self, message) -> None:
        if self.memory_bytes is not None:
            message.memory_bytes = self.memory_bytes
        if self.cpus is not None:
            message.cpus = self.cpus
        if self.pids is not None:
            message.pids = self.pids

    @classmethod
    def from_proto(cls, message) -> "Limits":
        return cls(message.memory_bytes if message.HasField("memory_bytes") else None,
                   message.cpus if message.HasField("cpus") else None,
                   message.pids if message.HasField("pids") else None)


@dataclasses.dataclass(frozen=True)
class Usage:
    memory_bytes: int
    memory_peak_bytes: int
    cpu_time: float  # seconds, user + system of the whole tree
    pids: int
    oom_kills: int

    @classmethod
    def from_proto(cls, m) -> "Usage":
        return cls(m.memory_bytes, m.memory_peak_bytes, _seconds(m.cpu_time), m.pids,
                   m.oom_kills)


@dataclasses.dataclass(frozen=True)
class ExecExit:
    """How a command ended, with exact figures for it and its descendants."""

    exit_code: int  # valid when signal == 0
    signal: int  # terminating signal, 0 if it exited
    wall_time: float  # seconds
    cpu_time: float  # seconds, user + system
    timed_out: bool  # killed at the wall-clock limit
    verdict: Verdict
    memory_peak_bytes: int
    oom_killed: bool
    output_truncated: bool
    cpu_time_exceeded: bool
    proto: object = dataclasses.field(repr=False, compare=False, default=None)

    @classmethod
    def from_proto(cls, m) -> "ExecExit":
        return cls(m.exit_code, m.signal, _seconds(m.wall_time), _seconds(m.cpu_time),
                   m.timed_out, Verdict(m.verdict), m.memory_peak_bytes, m.oom_killed,
                   m.output_truncated, m.cpu_time_exceeded, m)

    @property
    def returncode(self) -> int:
        """Like a shell: the exit code, or 128 + N for signal N."""
        return 128 + self.signal if self.signal else self.exit_code


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What exec() gathered: stdout and stderr (empty where a callback took
    them) and the exit."""

    stdout: bytes
    stderr: bytes
    exit: ExecExit

    @property
    def exit_code(self) -> int:
        return self.exit.exit_code

    @property
    def signal(self) -> int:
        return self.exit.signal

    @property
    def verdict(self) -> Verdict:
        return self.exit.verdict

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its limits."""
        return self.exit.verdict == Verdict.OK


@dataclasses.dataclass(frozen=True)
class ExecLimits:
    """Limits of one command (exec) or one judge step (run). None: no limit of
    its own. Times take seconds or "500ms"; sizes take bytes or "64M"."""

    cpu_time: Optional[Duration] = None
    wall_time: Optional[Duration] = None
    memory: Optional[Size] = None
    pids: Optional[int] = None
    output: Optional[Size] = None  # stdout + stderr bytes; beyond: OUTPUT_LIMIT
    file_size: Optional[Size] = None  # RLIMIT_FSIZE
    stack: Optional[Size] = None  # RLIMIT_STACK
    open_files: Optional[int] = None  # RLIMIT_NOFILE

    def to_proto(self, m, what: str = "limits") -> None:
        if self.cpu_time is not None:
            _set_duration(m.cpu_time, self.cpu_time, f"{what}.cpu_time")
        if self.wall_time is not None:
            _set_duration(m.wall_time, self.wall_time, f"{what}.wall_time")
        for name, field in (("memory", "memory_bytes"), ("output", "output_bytes"),
                            ("file_size", "file_size_bytes"), ("stack", "stack_bytes")):
            value = getattr(self, name)
            if value is not None:
                setattr(m, field, parse_size(value, f"{what}.{name}"))
        for name in ("pids", "open_files"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise invalid_argument(f"{what}.{name}: expected an int, got {value!r}")
                setattr(m, name, value)


@dataclasses.dataclass
class File:
    """One entry for write_files(): a file (content as bytes, str, or a binary
    file object read to its end), a directory (is_dir) or a symlink."""

    path: str
    content: Union[bytes, str, IO[bytes]] = b""
    mode: int = 0  # permission bits; 0 = 0644 (0755 for a directory)
    is_dir: bool = False
    symlink_target: str = ""


@dataclasses.dataclass(frozen=True)
class TransferResult:
    files: int  # files, directories and symlinks
    bytes: int  # content bytes


@dataclasses.dataclass
class TestCase:
    """One case of run(): stdin, the expected stdout (None: not compared), and
    its limits (without wall_time: 2 x cpu_time + 1 s, or 30 s)."""

    __test__ = False  # not a unittest/pytest test class

    stdin: Union[bytes, str] = b""
    expected_stdout: Optional[Union[bytes, str]] = None
    limits: Optional[ExecLimits] = None

    def to_proto(self, m, what: str) -> None:
        m.stdin = _bytes(self.stdin, f"{what}.stdin")
        if self.expected_stdout is not None:
            m.expected_stdout = _bytes(self.expected_stdout, f"{what}.expected_stdout")
        if self.limits is not None:
            self.limits.to_proto(m.limits, f"{what}.limits")


@dataclasses.dataclass(frozen=True)
class CaseResult:
    verdict: Verdict
    exit: Optional[ExecExit]
    stdout: bytes  # at most output_cap_bytes
    stderr: bytes
    stdout_capped: bool
    checker_output: bytes

    @classmethod
    def from_proto(cls, m) -> "CaseResult":
        return cls(Verdict(m.verdict), ExecExit.from_proto(m.exit) if m.HasField("exit") else None,
                   m.stdout, m.stderr, m.stdout_capped, m.checker_output)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of run(): the first verdict that is not OK (COMPILE_ERROR
    when the compile failed), else OK."""

    verdict: Verdict
    compile: Optional[CaseResult]
    cases: List[CaseResult]
    sandbox_id: str
    proto: object = dataclasses.field(repr=False, compare=False, default=None)

    @classmethod
    def from_proto(cls, m) -> "RunResult":
        return cls(Verdict(m.verdict),
                   CaseResult.from_proto(m.compile) if m.HasField("compile") else None,
                   [CaseResult.from_proto(c) for c in m.cases], m.sandbox_id, m)


def sandbox_fields(m) -> Dict[str, object]:
    """The attributes a Sandbox snapshot exposes, from a sbx.v1.Sandbox."""
    return {
        "id": m.id,
        "state": SandboxState(m.state),
        "image": m.image,
        "limits": Limits.from_proto(m.limits),
        "labels": dict(m.labels),
        "usage": Usage.from_proto(m.usage),
        "created_at": _timestamp(m.created_at, m.HasField("created_at")),
        "expires_at": _timestamp(m.expires_at, m.HasField("expires_at")),
        "init_pid": m.init_pid,
    }


def set_duration(message, value: Duration, what: str) -> None:
    _set_duration(message, value, what)


def to_bytes(value, what: str) -> bytes:
    return _bytes(value, what)

