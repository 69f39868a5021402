"""Errors: every failure of a call is an SbxError carrying a gRPC status code.

The daemon's code and message are passed through unchanged; failures found
on the client side (bad arguments, a closed exec stream) use the code the
daemon would have used, so callers handle both the same way.
"""

from __future__ import annotations

import grpc

__all__ = [
    "SbxError",
    "InvalidArgumentError",
    "NotFoundError",
    "FailedPreconditionError",
    "ResourceExhaustedError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "UnavailableError",
    "DeadlineExceededError",
    "CancelledError",
    "InternalError",
]


class SbxError(Exception):
    """A failed sbx call.

    Attributes:
        code: the grpc.StatusCode (e.g. grpc.StatusCode.NOT_FOUND).
        message: the status message, as the daemon wrote it.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The code's name: "NOT_FOUND", "INVALID_ARGUMENT", ..."""
        return self.code.name


class InvalidArgumentError(SbxError, ValueError):
    pass


class NotFoundError(SbxError, LookupError):
    pass


class FailedPreconditionError(SbxError):
    pass


class ResourceExhaustedError(SbxError):
    pass


class PermissionDeniedError(SbxError):
    pass


class UnauthenticatedError(SbxError):
    pass


class UnavailableError(SbxError, ConnectionError):
    pass


class DeadlineExceededError(SbxError, TimeoutError):
    pass


class CancelledError(SbxError):
    pass


class InternalError(SbxError):
    pass


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def make_error(code: grpc.StatusCode, message: str) -> SbxError:
    """The SbxError subclass for `code` (SbxError itself for the others)."""
    return _BY_CODE.get(code, SbxError)(code, message)


def from_rpc_error(error: grpc.RpcError) -> SbxError:
    """Converts what grpcio raises; the code and message are kept as they are."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return make_error(code, details or "")


def invalid_argument(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, message)
