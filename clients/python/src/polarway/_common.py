"""What the sync and async clients share: options, call metadata, Arrow IPC encoding/decoding,
result conversion. No I/O happens here."""

from __future__ import annotations

import io
import os
import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, Optional, Tuple, Union

import grpc
import polars as pl
import pyarrow as pa

from .errors import Internal, InvalidArgument, PolarwayError
from .v1 import polarway_pb2 as pb

if TYPE_CHECKING:  # pragma: no cover
    import pandas

ROUTING_KEY_HEADER = "x-polarway-key"
# The server's cap; ours matches so large chunks or results are not refused on our side.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The wire convention: IPC chunks of at most 1 MiB.
CHUNK_BYTES = 1024 * 1024
# Record batches larger than this are sliced before encoding, so the encoder never buffers more
# than about this much however big the input batch is.
BATCH_BYTES = 4 * 1024 * 1024

Format = Literal["polars", "arrow", "pandas"]
PathOrBytes = Union[str, "os.PathLike[str]", bytes, None]
#: What ``store`` accepts.
StoreInput = Union[pl.DataFrame, "pl.LazyFrame", pa.Table, pa.RecordBatch, pa.RecordBatchReader, "pandas.DataFrame"]


class _UseDefault:
    def __repr__(self) -> str:
        return "DEFAULT"


#: Marker for "the client's default timeout" (``timeout=None`` means no deadline).
DEFAULT: Any = _UseDefault()


@dataclass(frozen=True)
class Column:
    name: str
    #: Arrow data type as the server prints it, e.g. "Int64", "LargeUtf8", 'Timestamp(Microsecond, Some("UTC"))'.
    data_type: str
    nullable: bool


@dataclass(frozen=True)
class DatasetInfo:
    """One version of a stored dataset."""

    name: str
    version: int
    rows: int
    #: Size of the stored Parquet (zstd) object.
    bytes: int
    created_unix_ms: int
    #: Filled by ``describe`` and ``store``; empty in ``list`` results.
    columns: Tuple[Column, ...] = ()

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_unix_ms / 1000, tz=timezone.utc)

    @classmethod
    def _from_pb(cls, m: pb.DatasetInfo) -> "DatasetInfo":
        return cls(
            name=m.name,
            version=m.version,
            rows=m.rows,
            bytes=m.bytes,
            created_unix_ms=m.created_unix_ms,
            columns=tuple(Column(c.name, c.data_type, c.nullable) for c in m.columns),
        )


def cache_stats_dict(m: pb.CacheStatsResponse) -> dict[str, Any]:
    """Every counter the server sends (hits, misses, hit_rate, bytes, capacity, entries, evictions,
    and whatever later servers add), by field name."""
    return {f.name: getattr(m, f.name) for f in m.DESCRIPTOR.fields}


def _read(value: PathOrBytes) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


class Config:
    """Constructor options shared by DistributedClient and AsyncDistributedClient."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: Optional[float],
        credentials: Optional[grpc.ChannelCredentials],
        auth_token: Optional[str],
        tls: bool,
        ca_cert: PathOrBytes,
        client_cert: PathOrBytes,
        client_key: PathOrBytes,
        tls_server_name: Optional[str],
        retries: int,
        backoff: float,
        max_backoff: float,
        progress: bool,
        channel_options: Optional[Iterable[Tuple[str, Any]]],
    ) -> None:
        self.target = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
        self.timeout = timeout
        self.auth_token = auth_token or None
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.progress = progress
        # What pyarrow's Flight client needs to reach the same server: None when the caller passed
        # its own credentials object, which Flight cannot reuse.
        self.flight_tls: Optional[dict] = {} if credentials is None else None
        self.tls = credentials is not None
        if credentials is None and (tls or ca_cert or client_cert or client_key):
            if (client_cert is None) != (client_key is None):
                raise ValueError("mutual TLS needs both client_cert and client_key")
            root, key, chain = _read(ca_cert), _read(client_key), _read(client_cert)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root,  # None: the system's roots
                private_key=key,
                certificate_chain=chain,
            )
            self.tls = True
            self.flight_tls = {
                k: v
                for k, v in (
                    ("tls_root_certs", root),
                    ("cert_chain", chain),
                    ("private_key", key),
                    ("override_hostname", tls_server_name),
                )
                if v
            }
        self.credentials = credentials
        options: list[Tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Reconnect quickly after a failed connect, so our own UNAVAILABLE retries (with their
            # backoff) find a server that came up instead of a channel still backing off.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        options.extend(channel_options or ())
        self.channel_options = options

    def resolve_timeout(self, timeout: Any) -> Optional[float]:
        return self.timeout if timeout is DEFAULT else timeout

    def metadata(self, key: str = "") -> list[Tuple[str, str]]:
        md = [("x-request-id", uuid.uuid4().hex)]
        # Metadata must be printable ASCII; a name that is not gets its INVALID_ARGUMENT from the
        # server instead of a header error here.
        if key and key.isascii() and key.isprintable():
            md.append((ROUTING_KEY_HEADER, key))
        if self.auth_token:
            md.append(("authorization", f"Bearer {self.auth_token}"))
        return md

    def backoffs(self) -> Iterator[float]:
        """Delays between retries: exponential, capped, with jitter."""
        delay = self.backoff
        for _ in range(self.retries):
            yield delay * random.uniform(0.8, 1.2)
            delay = min(delay * 2, self.max_backoff)


def is_retryable(err: grpc.RpcError) -> bool:
    return bool(err.code() == grpc.StatusCode.UNAVAILABLE)


# `FROM name` but not `FROM func(...)`; the lookahead stops backtracking into a shorter name.
_FIRST_TABLE = re.compile(r'\bfrom\s+(?:"([^"]+)"|([A-Za-z0-9_.\-]+)(?![A-Za-z0-9_.\-]|\s*\())', re.IGNORECASE)


def query_routing_key(sql: str, into: Optional[str]) -> str:
    """The dataset a query is about: ``into`` when set, else the first table after FROM."""
    if into:
        return into
    m = _FIRST_TABLE.search(sql)
    return (m.group(1) or m.group(2)) if m else ""


def condition(if_absent: bool, if_version: Optional[int]) -> Optional[pb.Condition]:
    if if_absent and if_version is not None:
        raise ValueError("use either if_absent or if_version, not both")
    if if_absent:
        return pb.Condition(if_absent=True)
    if if_version is not None:
        return pb.Condition(if_version=if_version)
    return None


# ---------------------------------------------------------------------------------------------
# Encoding: anything table-like -> one Arrow IPC stream -> chunks of at most 1 MiB.


@dataclass
class ArrowSource:
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    rows: Optional[int]  # None when unknown up front (a reader)


def arrow_source(data: Any) -> ArrowSource:
    """Turn a store input into a schema and a lazy sequence of record batches."""
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if isinstance(data, pl.DataFrame):
        data = data.to_arrow()
    elif type(data).__module__.partition(".")[0] == "pandas" and type(data).__name__ == "DataFrame":
        data = pa.Table.from_pandas(data)
    elif isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, (pa.Table, pa.RecordBatchReader)) and hasattr(data, "__arrow_c_stream__"):
        data = pa.RecordBatchReader.from_stream(data)
    if isinstance(data, pa.Table):
        return ArrowSource(data.schema, iter(data.to_batches()), data.num_rows)
    if isinstance(data, pa.RecordBatchReader):
        return ArrowSource(data.schema, iter(data), None)
    raise TypeError(
        "store() takes a polars DataFrame/LazyFrame, a pyarrow Table/RecordBatch/RecordBatchReader, "
        f"a pandas DataFrame or an Arrow C stream, not {type(data).__name__}"
    )


def _bounded(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """Slice a big batch into pieces of about BATCH_BYTES (slices are zero-copy)."""
    size = batch.nbytes
    if size <= BATCH_BYTES or batch.num_rows <= 1:
        yield batch
        return
    step = max(1, batch.num_rows * BATCH_BYTES // size)
    for offset in range(0, batch.num_rows, step):
        yield batch.slice(offset, step)


class _Sink:
    """A write-only file that pyarrow's IPC writer fills and we drain as chunks."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False

    def write(self, data: Any) -> int:
        self.buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self, chunk: int, everything: bool = False) -> Iterator[bytes]:
        while len(self.buf) >= chunk or (everything and self.buf):
            out = bytes(self.buf[:chunk])
            del self.buf[:chunk]  # CPython trims a bytearray's head in O(1)
            yield out


def ipc_chunks(
    source: ArrowSource, on_rows: Callable[[int], Any] = lambda n: None, chunk: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The source's Arrow IPC stream, cut into chunks of at most ``chunk`` bytes as it is written."""
    sink = _Sink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), source.schema) as writer:
        yield from sink.drain(chunk)
        for batch in source.batches:
            for piece in _bounded(batch):
                writer.write_batch(piece)
                on_rows(piece.num_rows)
                yield from sink.drain(chunk)
    yield from sink.drain(chunk, everything=True)


# ---------------------------------------------------------------------------------------------
# Decoding: chunks (as they arrive) -> record batches -> Polars / Arrow / pandas.


class ChunkReader(io.RawIOBase):
    """A read-only file over IPC chunks pulled on demand from ``next_chunk`` (None at the end),
    so that ``pyarrow.ipc.open_stream`` decodes while the response is still arriving and only the
    current chunk is held."""

    def __init__(self, next_chunk: Callable[[], Optional[bytes]]) -> None:
        super().__init__()
        self._next_chunk = next_chunk
        self._cur = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        want, filled = len(b), 0
        while filled < want:
            if not self._cur:
                if self._eof:
                    break
                chunk = self._next_chunk()
                if chunk is None:
                    self._eof = True
                    break
                self._cur = memoryview(chunk)
                continue
            n = min(want - filled, len(self._cur))
            b[filled : filled + n] = self._cur[:n]
            self._cur = self._cur[n:]
            filled += n
        return filled


def chunks_from(messages: Iterable[Any]) -> Callable[[], Optional[bytes]]:
    """``next_chunk`` over response messages that carry ``ipc`` (empty ones are skipped)."""
    it = iter(messages)

    def next_chunk() -> Optional[bytes]:
        for m in it:
            if m.ipc:
                return m.ipc
        return None

    return next_chunk


def decode_error(err: Exception) -> PolarwayError:
    return Internal(f"could not decode the server's Arrow IPC stream: {err}", grpc.StatusCode.DATA_LOSS)


def open_reader(next_chunk: Callable[[], Optional[bytes]]) -> pa.RecordBatchStreamReader:
    try:
        return pa.ipc.open_stream(ChunkReader(next_chunk))
    except (pa.ArrowInvalid, pa.ArrowIOError) as e:
        raise decode_error(e) from None


def read_next(reader: pa.RecordBatchStreamReader) -> Optional[pa.RecordBatch]:
    """The next batch or None at the end (no StopIteration: this also runs in worker threads)."""
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
    except (pa.ArrowInvalid, pa.ArrowIOError) as e:
        raise decode_error(e) from None


def read_table(next_chunk: Callable[[], Optional[bytes]], on_rows: Callable[[int], Any] = lambda n: None) -> pa.Table:
    reader = open_reader(next_chunk)
    batches = []
    while (batch := read_next(reader)) is not None:
        batches.append(batch)
        on_rows(batch.num_rows)
    return pa.Table.from_batches(batches, schema=reader.schema)


def check_format(fmt: str) -> None:
    if fmt not in ("polars", "arrow", "pandas"):
        raise ValueError(f"format must be 'polars', 'arrow' or 'pandas', not {fmt!r}")


def convert(data: Union[pa.Table, pa.RecordBatch], fmt: str) -> Any:
    if fmt == "arrow":
        return data
    if fmt == "pandas":
        return data.to_pandas()
    return pl.from_arrow(data)


def load_request(name: str, columns: Optional[Iterable[str]], version: Optional[int]) -> pb.LoadRequest:
    if isinstance(columns, str):
        columns = [columns]
    return pb.LoadRequest(name=name, columns=list(columns or ()), version=version)


class Progress:
    """A tqdm bar counting rows, or nothing when disabled."""

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def __init__(self, enabled: bool, desc: str, total: Optional[int]) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover
                raise ImportError("progress=True needs tqdm: pip install 'polarway[progress]'") from None
            self._bar = tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, disable=False)

    def update(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def store_requests(
    name: str, cond: Optional[pb.Condition], source: ArrowSource, bar: Progress
) -> Iterator[pb.StoreRequest]:
    yield pb.StoreRequest(header=pb.StoreHeader(name=name, condition=cond))
    for chunk in ipc_chunks(source, bar.update):
        yield pb.StoreRequest(ipc=chunk)


def guarded(requests: Iterator[pb.StoreRequest], failure: list[BaseException]) -> Iterator[pb.StoreRequest]:
    """gRPC consumes an upload's requests in its own thread and turns an exception there into a
    cancelled call (so nothing is committed); keep the exception so the caller can raise it
    instead of an opaque UNKNOWN."""
    try:
        yield from requests
    except Exception as e:  # not GeneratorExit: that is gRPC closing a finished call's requests
        failure.append(e)
        raise


def batch_items(datasets: Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]) -> list[Tuple[str, ArrowSource]]:
    pairs = datasets.items() if isinstance(datasets, Mapping) else datasets
    items = [(name, arrow_source(data)) for name, data in pairs]
    if not items:
        raise ValueError("store_batch needs at least one dataset")
    return items


def batch_requests(items: list[Tuple[str, ArrowSource]], bar: Progress) -> Iterator[pb.StoreRequest]:
    for name, source in items:
        yield from store_requests(name, None, source, bar)


def batch_rows(items: list[Tuple[str, ArrowSource]]) -> Optional[int]:
    rows = [s.rows for _, s in items]
    return None if any(r is None for r in rows) else sum(rows)  # type: ignore[arg-type]


def no_result(what: str) -> PolarwayError:
    return Internal(f"the server ended the {what} call without a result", grpc.StatusCode.INTERNAL)


__all__ = ["DEFAULT", "Column", "DatasetInfo", "InvalidArgument"]
