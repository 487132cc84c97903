"""Loads over Arrow Flight. Workers and the gateway serve Flight next to ``polarway.v1``; a load
through it is one GetFlightInfo and one DoGet read by pyarrow's C++ Flight client, which decodes
record batches in place as they arrive instead of reassembling IPC chunks in Python. (Stores stay
on ``polarway.v1``: their time is the server's Parquet writing, and measured over Flight DoPut
they were no faster.) Results,
errors, retries and progress bars are those of the gRPC path, which is used whenever Flight
cannot be: a client built with its own ``credentials`` object or interceptors, or a server
without Flight (found on the first load, then remembered)."""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, Tuple

import grpc
import pyarrow as pa
from google.protobuf import any_pb2

from .errors import _BY_CODE, PolarwayError
from .v1 import polarway_pb2 as pb

# A pyarrow Flight error's text: "Flight (or gRPC) returned <what> error, with message: <message>. gRPC
# client debug context: ...".
_MESSAGE = re.compile(
    r"(?:Flight|gRPC) returned (?P<what>[a-z ]+?) error, with message: (?P<msg>.*?)"
    r"(?:\. gRPC client debug context:.*)?$",
    re.S,
)
_BY_WHAT = {
    "invalid argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not found": grpc.StatusCode.NOT_FOUND,
    "already exists": grpc.StatusCode.ALREADY_EXISTS,
    "aborted": grpc.StatusCode.ABORTED,
    "resource exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "failed precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "out of range": grpc.StatusCode.OUT_OF_RANGE,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "unauthorized": grpc.StatusCode.PERMISSION_DENIED,
    "permission denied": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "timed out": grpc.StatusCode.DEADLINE_EXCEEDED,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "deadline exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "internal": grpc.StatusCode.INTERNAL,
    "unknown": grpc.StatusCode.UNKNOWN,
}


def flight_error(err: BaseException) -> PolarwayError:
    """The typed error for a failed Flight call (the same classes as the gRPC path raises)."""
    from pyarrow import flight

    text = str(err)
    m = _MESSAGE.search(text)
    code = _BY_WHAT.get(m.group("what")) if m else None
    if code is None:
        for cls, c in (
            (flight.FlightUnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
            (flight.FlightUnauthorizedError, grpc.StatusCode.PERMISSION_DENIED),
            (flight.FlightUnavailableError, grpc.StatusCode.UNAVAILABLE),
            (flight.FlightTimedOutError, grpc.StatusCode.DEADLINE_EXCEEDED),
            (flight.FlightCancelledError, grpc.StatusCode.CANCELLED),
            (pa.ArrowKeyError, grpc.StatusCode.NOT_FOUND),
            (pa.ArrowInvalid, grpc.StatusCode.INVALID_ARGUMENT),
            (pa.ArrowNotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
        ):
            if isinstance(err, cls):
                code = c
                break
    code = code or grpc.StatusCode.UNKNOWN
    message = m.group("msg") if m else text
    return _BY_CODE.get(code, PolarwayError)(message, code)


def _packed(req: Any) -> bytes:
    any_msg = any_pb2.Any()
    any_msg.Pack(req)  # type URL type.googleapis.com/polarway.v1.<message>
    return any_msg.SerializeToString()


class FlightPath:
    """One pyarrow Flight client for the server the gRPC channel talks to."""

    def __init__(self, location: str, tls: dict, metadata: Callable[[str], list]) -> None:
        from pyarrow import flight

        self._flight = flight
        self._client = flight.FlightClient(location, **tls)
        self._metadata = metadata
        self.supported: Optional[bool] = None  # unknown until the first call

    def _options(self, key: str, timeout: Optional[float]) -> Any:
        headers = [(k.encode(), v.encode()) for k, v in self._metadata(key)]
        return self._flight.FlightCallOptions(timeout=timeout, headers=headers)

    def start(self, req: pb.LoadRequest, timeout: Optional[float]) -> Optional[Tuple[pb.DatasetInfo, Any]]:
        """GetFlightInfo and DoGet of ``req``: the dataset's description and a stream reader, or
        None when the server has no Flight service (the caller then uses gRPC). Failures raise
        the same typed errors as the gRPC path."""
        options = self._options(req.name, timeout)
        try:
            info = self._client.get_flight_info(self._flight.FlightDescriptor.for_command(_packed(req)), options)
            reader = self._client.do_get(info.endpoints[0].ticket, options)
        except (self._flight.FlightError, pa.ArrowException) as e:
            error = flight_error(e)
            if error.code == grpc.StatusCode.UNIMPLEMENTED and not self.supported:
                self.supported = False
                return None
            if error.code != grpc.StatusCode.UNAVAILABLE:
                self.supported = True  # the server's Flight service answered
            raise error from None
        self.supported = True
        return pb.DatasetInfo.FromString(info.app_metadata), reader

    def close(self) -> None:
        self._client.close()


def read_all(reader: Any, on_rows: Optional[Callable[[int], Any]]) -> pa.Table:
    """The rest of a DoGet as one table (batch by batch when progress is shown)."""
    from pyarrow import flight

    try:
        if on_rows is None:
            return reader.read_all()
        batches = []
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            batches.append(chunk.data)
            on_rows(chunk.data.num_rows)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except (flight.FlightError, pa.ArrowException) as e:
        raise flight_error(e) from None


def next_batch(reader: Any) -> Optional[pa.RecordBatch]:
    """The next record batch of a DoGet, or None at its end."""
    from pyarrow import flight

    try:
        return reader.read_chunk().data
    except StopIteration:
        return None
    except (flight.FlightError, pa.ArrowException) as e:
        raise flight_error(e) from None


def location(target: str, tls: bool) -> str:
    return f"{'grpc+tls' if tls else 'grpc+tcp'}://{target}"


class FlightSlot:
    """A client's Flight path, made on first use; None when Flight is off or unavailable."""

    def __init__(self, cfg: Any, enabled: bool) -> None:
        self._cfg = cfg
        self._enabled = enabled and cfg.flight_tls is not None
        self.path: Optional[FlightPath] = None

    def get(self) -> Optional[FlightPath]:
        if not self._enabled or (self.path is not None and self.path.supported is False):
            return None
        if self.path is None:
            try:
                self.path = FlightPath(
                    location(self._cfg.target, self._cfg.tls), self._cfg.flight_tls or {}, self._cfg.metadata
                )
            except ImportError:  # a pyarrow built without Flight
                self._enabled = False
                return None
        return self.path

    def close(self) -> None:
        if self.path is not None:
            self.path.close()


def load_table(
    path: FlightPath, req: pb.LoadRequest, timeout: Optional[float], progress: Callable[[Optional[int]], Any]
) -> Optional[pa.Table]:
    """A whole load over Flight (blocking), or None when the server has no Flight service.
    ``progress(total)`` makes the progress bar."""
    started = path.start(req, timeout)
    if started is None:
        return None
    info, reader = started
    bar = progress(info.rows)
    try:
        return read_all(reader, bar.update if bar.enabled else None)
    finally:
        bar.close()
