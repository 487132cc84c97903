"""The blocking client."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import pyarrow as pa

from . import _common as c
from ._common import DEFAULT, DatasetInfo, Format, PathOrBytes, StoreInput
from ._flight import FlightSlot, load_table
from ._flight import next_batch as flight_next_batch
from .errors import Unavailable, from_rpc_error
from .v1 import polarway_pb2 as pb
from .v1 import polarway_pb2_grpc as pb_grpc

T = TypeVar("T")
S = TypeVar("S", bound="_BatchStream")


class _BatchStream(Iterator[Any]):
    """What both ``load_stream`` paths share: one frame per record batch, the progress bar, and
    ``close()``. A subclass reads with ``_next_batch()`` (None at the end) and cancels with
    ``_cancel()``."""

    def __init__(self, dataset: pb.DatasetInfo, fmt: str, bar: c.Progress) -> None:
        self.dataset = DatasetInfo._from_pb(dataset)
        self._fmt = fmt
        self._bar = bar
        self._done = False

    def _next_batch(self) -> Optional[pa.RecordBatch]:
        raise NotImplementedError

    def _cancel(self) -> None:
        raise NotImplementedError

    def __iter__(self: S) -> S:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            batch = self._next_batch()
        except BaseException:
            self.close()
            raise
        if batch is None:
            self._done = True
            self._bar.close()
            raise StopIteration
        self._bar.update(batch.num_rows)
        return c.convert(batch, self._fmt)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._cancel()
            self._bar.close()

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FrameStream(_BatchStream):
    """What ``load_stream`` returns: an iterator of frames, one per record batch, decoded as the
    response arrives. Each frame is yours alone: drop it and its memory is freed. ``dataset``
    describes the version being streamed. ``close()`` (or leaving a ``with`` block) cancels the
    rest of the stream."""

    def __init__(self, call: Any, first: pb.LoadResponse, fmt: str, bar: c.Progress) -> None:
        super().__init__(first.dataset, fmt, bar)
        self._call = call
        self._pending = first.ipc or None
        self._reader: Any = None

    def _next_chunk(self) -> Optional[bytes]:
        if self._pending is not None:
            chunk, self._pending = self._pending, None
            return chunk
        try:
            for msg in self._call:
                if msg.ipc:
                    return msg.ipc
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return None

    def _next_batch(self) -> Optional[pa.RecordBatch]:
        if self._reader is None:
            self._reader = c.open_reader(self._next_chunk)
        return c.read_next(self._reader)

    def _cancel(self) -> None:
        self._call.cancel()


class FlightFrameStream(FrameStream):
    """``load_stream`` over Arrow Flight: the same iterator, fed by a DoGet reader."""

    def __init__(self, reader: Any, dataset: pb.DatasetInfo, fmt: str, bar: c.Progress) -> None:
        _BatchStream.__init__(self, dataset, fmt, bar)  # not FrameStream's: there is no gRPC call
        self._flight_reader = reader

    def _next_batch(self) -> Optional[pa.RecordBatch]:
        return flight_next_batch(self._flight_reader)

    def _cancel(self) -> None:
        self._flight_reader.cancel()


class DistributedClient:
    """A connection to a Polarway server (or a load balancer in front of several).

    ``timeout`` (seconds, None for no deadline) is every call's default deadline; each method takes
    ``timeout=`` to override it. Idempotent calls (health_check, load, load_stream's start, query
    without ``into``, list, describe, cache_stats) are retried ``retries`` times with exponential
    backoff (``backoff`` doubling up to ``max_backoff`` seconds) when the server is UNAVAILABLE.

    TLS: pass ``credentials=grpc.ssl_channel_credentials(...)``, or ``tls=True`` with optional
    ``ca_cert``/``client_cert``/``client_key`` (paths or PEM bytes). ``auth_token`` is sent as
    ``authorization: Bearer <token>``. ``channel_options`` adds gRPC channel arguments;
    ``interceptors`` are gRPC client interceptors (logging, tracing, extra metadata).

    ``load`` and ``load_stream`` go over Arrow Flight (pyarrow's C++ client) when the server offers it and the
    connection can be described to Flight (not with a ``credentials`` object or interceptors);
    ``flight=False`` keeps every call on gRPC. Results and errors are the same either way.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 50052,
        timeout: Optional[float] = 30,
        credentials: Optional[grpc.ChannelCredentials] = None,
        auth_token: Optional[str] = None,
        *,
        tls: bool = False,
        ca_cert: PathOrBytes = None,
        client_cert: PathOrBytes = None,
        client_key: PathOrBytes = None,
        tls_server_name: Optional[str] = None,
        retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        progress: bool = False,
        channel_options: Optional[Iterable[Tuple[str, Any]]] = None,
        interceptors: Sequence[Any] = (),
        flight: bool = True,
    ) -> None:
        self._cfg = c.Config(
            host,
            port,
            timeout,
            credentials,
            auth_token,
            tls,
            ca_cert,
            client_cert,
            client_key,
            tls_server_name,
            retries,
            backoff,
            max_backoff,
            progress,
            channel_options,
        )
        cfg = self._cfg
        if cfg.credentials is not None:
            self._channel = grpc.secure_channel(cfg.target, cfg.credentials, options=cfg.channel_options)
        else:
            self._channel = grpc.insecure_channel(cfg.target, options=cfg.channel_options)
        self._stub_channel = grpc.intercept_channel(self._channel, *interceptors) if interceptors else self._channel
        self._stub = pb_grpc.PolarwayStub(self._stub_channel)
        # Loads over Arrow Flight when the server offers it (see _flight.py); interceptors see
        # gRPC calls only, so a client with interceptors keeps every call on gRPC.
        self._flight = FlightSlot(cfg, flight and not interceptors)

    # -- plumbing --------------------------------------------------------------------------

    def _kw(self, key: str, timeout: Any) -> dict[str, Any]:
        return {"timeout": self._cfg.resolve_timeout(timeout), "metadata": self._cfg.metadata(key)}

    def _retrying(self, call: Callable[[], T]) -> T:
        """Run an idempotent call, retrying on UNAVAILABLE with exponential backoff."""
        delays = self._cfg.backoffs()
        while True:
            try:
                return call()
            except grpc.RpcError as e:
                delay = next(delays, None) if c.is_retryable(e) else None
                if delay is None:
                    raise from_rpc_error(e) from None
                time.sleep(delay)

    def _once(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _retrying_typed(self, call: Callable[[], T]) -> T:
        """``_retrying`` for calls that raise typed errors (the Flight path)."""
        delays = self._cfg.backoffs()
        while True:
            try:
                return call()
            except Unavailable:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)

    def _progress(self, progress: Optional[bool], desc: str, total: Optional[int]) -> c.Progress:
        return c.Progress(self._cfg.progress if progress is None else progress, desc, total)

    # -- calls -----------------------------------------------------------------------------

    def health_check(self, *, timeout: Any = DEFAULT) -> str:
        """The server's status: "OK" when it can serve."""
        return self._retrying(lambda: self._stub.Health(pb.HealthRequest(), **self._kw("", timeout)).status)

    def store(
        self,
        name: str,
        data: StoreInput,
        *,
        if_absent: bool = False,
        if_version: Optional[int] = None,
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> DatasetInfo:
        """Store ``data`` as the next version of ``name``. With ``if_absent`` only if the dataset
        does not exist (else AlreadyExists); with ``if_version=N`` only if its current version is N
        (else Aborted). Not retried: a store creates a version."""
        cond = c.condition(if_absent, if_version)
        source = c.arrow_source(data)
        bar = self._progress(progress, f"store {name}", source.rows)
        try:
            resp = self._upload(self._stub.Store, c.store_requests(name, cond, source, bar), name, timeout)
        finally:
            bar.close()
        return DatasetInfo._from_pb(resp.dataset)

    def store_batch(
        self,
        datasets: Union[Mapping[str, StoreInput], Iterable[Tuple[str, StoreInput]]],
        *,
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> list[DatasetInfo]:
        """Store several datasets in one call (a dict or (name, data) pairs): all are committed or
        none is. Returns their descriptions in order."""
        items = c.batch_items(datasets)
        bar = self._progress(progress, "store_batch", c.batch_rows(items))
        try:
            resp = self._upload(self._stub.StoreBatch, c.batch_requests(items, bar), items[0][0], timeout)
        finally:
            bar.close()
        return [DatasetInfo._from_pb(d) for d in resp.datasets]

    def _upload(self, method: Any, requests: Iterator[pb.StoreRequest], key: str, timeout: Any) -> Any:
        failure: list[BaseException] = []
        try:
            return method(c.guarded(requests, failure), **self._kw(key, timeout))
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from None
            raise from_rpc_error(e) from None

    def load(
        self,
        name: str,
        columns: Optional[Iterable[str]] = None,
        version: Optional[int] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> Any:
        """The dataset (latest version, or ``version``), optionally only ``columns`` in that order,
        as a Polars DataFrame (``format="arrow"``: a pyarrow Table; ``"pandas"``: a pandas DataFrame)."""
        c.check_format(format)
        req = c.load_request(name, columns, version)
        path = self._flight.get()
        if path is not None:
            table = self._retrying_typed(
                lambda: load_table(
                    path,
                    req,
                    self._cfg.resolve_timeout(timeout),
                    lambda rows: self._progress(progress, f"load {name}", rows),
                )
            )
            if table is not None:
                return c.convert(table, format)

        def attempt() -> Any:
            call = self._stub.Load(req, **self._kw(name, timeout))
            first = next(call, None)
            if first is None:
                raise c.no_result("Load")
            bar = self._progress(progress, f"load {name}", first.dataset.rows)
            try:
                return c.read_table(c.chunks_from(itertools.chain([first], call)), bar.update)
            finally:
                bar.close()

        return c.convert(self._retrying(attempt), format)

    def load_stream(
        self,
        name: str,
        columns: Optional[Iterable[str]] = None,
        version: Optional[int] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> FrameStream:
        """Stream the dataset back as frames, one per record batch, decoded as they arrive: memory
        holds one batch (plus a chunk), not the dataset. Errors such as NotFound are raised here,
        before iteration. ``timeout`` bounds the whole stream (None: no deadline)."""
        c.check_format(format)
        req = c.load_request(name, columns, version)
        path = self._flight.get()
        if path is not None:
            started = self._retrying_typed(lambda: path.start(req, self._cfg.resolve_timeout(timeout)))
            if started is not None:
                info, reader = started
                return FlightFrameStream(reader, info, format, self._progress(progress, f"load {name}", info.rows))

        def start() -> Tuple[Any, pb.LoadResponse]:
            call = self._stub.Load(req, **self._kw(name, timeout))
            first = next(call, None)
            if first is None:
                raise c.no_result("Load")
            return call, first

        call, first = self._retrying(start)
        return FrameStream(call, first, format, self._progress(progress, f"load {name}", first.dataset.rows))

    def query(
        self,
        sql: str,
        into: Optional[str] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
    ) -> Any:
        """Run DuckDB SQL over the stored datasets (tables by name) and the server's cold Parquet
        files. Returns the result as a Polars DataFrame (or ``format``), or with ``into`` stores it
        server-side as that dataset and returns its DatasetInfo (not retried then)."""
        c.check_format(format)
        req = pb.QueryRequest(sql=sql, into=into)
        kw = lambda: self._kw(c.query_routing_key(sql, into), timeout)  # noqa: E731
        if into is not None:

            def stored() -> DatasetInfo:
                for msg in self._stub.Query(req, **kw()):
                    if msg.HasField("stored"):
                        return DatasetInfo._from_pb(msg.stored)
                raise c.no_result("Query")

            return self._once(stored)
        table = self._retrying(lambda: c.read_table(c.chunks_from(self._stub.Query(req, **kw()))))
        return c.convert(table, format)

    def list(self, prefix: str = "", *, timeout: Any = DEFAULT) -> list[DatasetInfo]:
        """Datasets (latest versions) whose names start with ``prefix``, sorted by name. Their
        ``columns`` are empty: ``describe`` fills them."""
        resp = self._retrying(lambda: self._stub.List(pb.ListRequest(prefix=prefix), **self._kw("", timeout)))
        return [DatasetInfo._from_pb(d) for d in resp.datasets]

    def describe(self, name: str, version: Optional[int] = None, *, timeout: Any = DEFAULT) -> DatasetInfo:
        """Version, rows, size, columns and commit time of the latest version (or ``version``)."""
        req = pb.DescribeRequest(name=name, version=version)
        return DatasetInfo._from_pb(self._retrying(lambda: self._stub.Describe(req, **self._kw(name, timeout))))

    def delete(self, name: str, *, timeout: Any = DEFAULT) -> int:
        """Delete the dataset; returns the version it had. Not retried."""
        return self._once(lambda: self._stub.Delete(pb.DeleteRequest(name=name), **self._kw(name, timeout)).version)

    def cache_stats(self, *, timeout: Any = DEFAULT) -> dict[str, Any]:
        """The server's read-through cache counters: hits, misses, hit_rate, bytes, capacity,
        entries, evictions."""
        resp = self._retrying(lambda: self._stub.CacheStats(pb.CacheStatsRequest(), **self._kw("", timeout)))
        return c.cache_stats_dict(resp)

    def close(self) -> None:
        self._channel.close()
        self._flight.close()

    def __enter__(self) -> "DistributedClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DistributedClient({self._cfg.target!r})"
