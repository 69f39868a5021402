"""sbx: a Python client for the sbx sandbox daemon (sbxd, gRPC API sbx.v1).

    import sbx

    with sbx.connect() as client:                       # $SBX_SERVER or /run/sbx/sbxd.sock
        with client.create(memory="256M", pids=64) as box:   # destroyed on exit
            r = box.exec(["sh", "-c", "read x; echo $x; exit 3"], stdin=b"hi\\n")
            assert (r.stdout, r.exit_code) == (b"hi\\n", 3)

Every failed call raises SbxError (or a subclass such as NotFoundError) with
the gRPC status code and message of the daemon.
"""

# The generated sbx/v1 modules may live in another sys.path entry than this
# file (e.g. a build directory): let the package span every "sbx" directory.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from ._client import (DEFAULT_ADDRESS, Client, Sandbox, connect,  # noqa: E402
                      default_address, normalize_address)
from ._errors import (CancelledError, DeadlineExceededError,  # noqa: E402
                      FailedPreconditionError, InternalError, InvalidArgumentError,
                      NotFoundError, PermissionDeniedError, ResourceExhaustedError, SbxError,
                      UnauthenticatedError, UnavailableError)
from ._exec import ExecCall  # noqa: E402
from ._types import (CaseResult, Compare, ExecExit, ExecLimits, ExecResult,  # noqa: E402
                     File, Limits, RunResult, SandboxState, TestCase, TransferResult, Usage,
                     Verdict)
from ._units import format_size, parse_duration_ns, parse_size  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDRESS", "Client", "Sandbox", "connect", "default_address", "normalize_address",
    "ExecCall", "SbxError", "CancelledError", "DeadlineExceededError",
    "FailedPreconditionError", "InternalError", "InvalidArgumentError", "NotFoundError",
    "PermissionDeniedError", "ResourceExhaustedError", "UnauthenticatedError",
    "UnavailableError", "CaseResult", "Compare", "ExecExit", "ExecLimits", "ExecResult",
    "File", "Limits", "RunResult", "SandboxState", "TestCase", "TransferResult", "Usage",
    "Verdict", "format_size", "parse_duration_ns", "parse_size",
]
