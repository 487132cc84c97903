"""Typed errors: every failed call raises a PolarwayError subclass carrying the gRPC status code
and the server's message, never a raw grpc.RpcError."""

from __future__ import annotations

import grpc


class PolarwayError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(PolarwayError, ValueError):
    """Bad dataset name, malformed Arrow data, bad SQL, unknown column."""


class NotFound(PolarwayError, LookupError):
    """No such dataset or version."""


class ConditionFailed(PolarwayError):
    """A conditional store's precondition did not hold (AlreadyExists or Aborted)."""


class AlreadyExists(ConditionFailed):
    """store(..., if_absent=True) and the dataset exists."""


class Aborted(ConditionFailed):
    """store(..., if_version=N) and the current version is not N."""


class PermissionDenied(PolarwayError, PermissionError):
    """The SQL sandbox refused a statement (COPY, ATTACH, INSTALL, SET, file access, ...)."""


class Unauthenticated(PolarwayError):
    """Missing or wrong token."""


class ResourceExhausted(PolarwayError):
    """Upload or chunk too big, query memory limit, too many concurrent requests."""


class Unavailable(PolarwayError, ConnectionError):
    """The server cannot be reached or is shutting down (idempotent calls retry this first)."""


class DeadlineExceeded(PolarwayError, TimeoutError):
    """The call's timeout (client side) or the server's query timeout passed."""


class Cancelled(PolarwayError):
    """The call was cancelled."""


class Internal(PolarwayError):
    """The server failed (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED)."""


_BY_CODE: dict[grpc.StatusCode, type[PolarwayError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
    grpc.StatusCode.UNIMPLEMENTED: Internal,
}


def from_rpc_error(err: grpc.RpcError) -> PolarwayError:
    """The typed error for a failed call (sync grpc.RpcError or grpc.aio.AioRpcError)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    details = err.details() if hasattr(err, "details") else None  # type: ignore[attr-defined]
    code = code or grpc.StatusCode.UNKNOWN
    return _BY_CODE.get(code, PolarwayError)(details or code.name.lower(), code)


__all__ = [
    "PolarwayError",
    "InvalidArgument",
    "NotFound",
    "ConditionFailed",
    "AlreadyExists",
    "Aborted",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
    "from_rpc_error",
]
