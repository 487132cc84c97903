"""The asyncio client (grpc.aio): the same methods as DistributedClient, as coroutines."""

from __future__ import annotations

import asyncio
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import grpc
import grpc.aio

from . import _common as c
from ._common import DEFAULT, DatasetInfo, Format, PathOrBytes, StoreInput
from ._flight import FlightSlot, load_table
from .errors import PolarwayError, Unavailable, from_rpc_error
from .v1 import polarway_pb2 as pb
from .v1 import polarway_pb2_grpc as pb_grpc

T = TypeVar("T")


class AsyncFrameStream(AsyncIterator[Any]):
    """What ``AsyncDistributedClient.load_stream`` returns: ``async for frame in ...``, one frame per
    record batch, decoded (in a worker thread) as the response arrives. The call starts on the first
    iteration, or on ``await stream`` / ``async with stream`` (which raise NotFound & co. early and
    set ``dataset``)."""

    def __init__(
        self, client: "AsyncDistributedClient", req: pb.LoadRequest, fmt: str, timeout: Any, progress: Optional[bool]
    ) -> None:
        self._client = client
        self._req = req
        self._fmt = fmt
        self._timeout = timeout
        self._progress = progress
        self.dataset: Optional[DatasetInfo] = None
        self._call: Any = None
        self._reader: Any = None
        self._done = False
        self._bar: Optional[c.Progress] = None

    async def _start(self) -> "AsyncFrameStream":
        if self._call is not None:
            return self
        client, req = self._client, self._req
        stub = await client._get_stub()

        async def start() -> Tuple[Any, pb.LoadResponse]:
            call = stub.Load(req, **client._kw(req.name, self._timeout))
            first = await call.read()
            if first is grpc.aio.EOF:
                raise c.no_result("Load")
            return call, first

        self._call, first = await client._retrying(start)
        self.dataset = DatasetInfo._from_pb(first.dataset)
        self._bar = client._progress(self._progress, f"load {req.name}", first.dataset.rows)
        loop = asyncio.get_running_loop()
        pending = [first]
        call = self._call

        def next_chunk() -> Optional[bytes]:
            # Runs in a worker thread (inside pyarrow's reader); the read itself runs on the loop.
            while True:
                msg = pending.pop() if pending else asyncio.run_coroutine_threadsafe(call.read(), loop).result()
                if msg is grpc.aio.EOF:
                    return None
                if msg.ipc:
                    return msg.ipc

        def first_batch() -> Optional[Any]:
            self._reader = c.open_reader(next_chunk)
            return c.read_next(self._reader)

        self._next_batch = lambda: first_batch() if self._reader is None else c.read_next(self._reader)
        return self

    def __await__(self) -> Any:
        return self._start().__await__()

    def __aiter__(self) -> "AsyncFrameStream":
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        try:
            await self._start()
            batch = await asyncio.to_thread(self._next_batch)
        except grpc.RpcError as e:
            await self.aclose()
            raise from_rpc_error(e) from None
        except BaseException:
            await self.aclose()
            raise
        if batch is None:
            self._done = True
            if self._bar:
                self._bar.close()
            raise StopAsyncIteration
        if self._bar:
            self._bar.update(batch.num_rows)
        return c.convert(batch, self._fmt)

    async def aclose(self) -> None:
        """Cancel the rest of the stream."""
        if not self._done:
            self._done = True
            if self._call is not None:
                self._call.cancel()
            if self._bar:
                self._bar.close()

    async def __aenter__(self) -> "AsyncFrameStream":
        return await self._start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class AsyncDistributedClient:
    """The asyncio twin of :class:`polarway.DistributedClient`: same constructor, same methods
    (coroutines; ``load_stream`` gives an async iterator). The channel opens on the first call, in
    the running event loop. Close with ``await client.close()`` or ``async with``.

    ``interceptors`` are grpc.aio client interceptors. They see every call but ``store`` and
    ``store_batch``, which travel on a second, threaded channel (see ``_get_upload_stub``)."""

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
        self._interceptors = list(interceptors) or None
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
        self._channel: Optional[grpc.aio.Channel] = None
        self._stub: Any = None
        self._upload_channel: Optional[grpc.Channel] = None
        self._upload_stub: Any = None
        # Whole loads over Arrow Flight, as DistributedClient does (run in a thread: pyarrow's
        # Flight client blocks).
        self._flight = FlightSlot(self._cfg, flight and not interceptors)

    # -- plumbing --------------------------------------------------------------------------

    async def _get_stub(self) -> Any:
        if self._stub is None:
            cfg = self._cfg
            if cfg.credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    cfg.target, cfg.credentials, options=cfg.channel_options, interceptors=self._interceptors
                )
            else:
                self._channel = grpc.aio.insecure_channel(
                    cfg.target, options=cfg.channel_options, interceptors=self._interceptors
                )
            self._stub = pb_grpc.PolarwayStub(self._channel)
        return self._stub

    def _kw(self, key: str, timeout: Any) -> dict[str, Any]:
        return {"timeout": self._cfg.resolve_timeout(timeout), "metadata": self._cfg.metadata(key)}

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        delays = self._cfg.backoffs()
        while True:
            try:
                return await call()
            except grpc.RpcError as e:
                delay = next(delays, None) if c.is_retryable(e) else None
                if delay is None:
                    raise from_rpc_error(e) from None
                await asyncio.sleep(delay)

    async def _once(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def _retrying_typed(self, call: Callable[[], Awaitable[T]]) -> T:
        """``_retrying`` for calls that raise typed errors (the Flight path)."""
        delays = self._cfg.backoffs()
        while True:
            try:
                return await call()
            except Unavailable:
                delay = next(delays, None)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    def _progress(self, progress: Optional[bool], desc: str, total: Optional[int]) -> c.Progress:
        return c.Progress(self._cfg.progress if progress is None else progress, desc, total)

    # -- calls -----------------------------------------------------------------------------

    async def health_check(self, *, timeout: Any = DEFAULT) -> str:
        stub = await self._get_stub()

        async def call() -> str:
            return (await stub.Health(pb.HealthRequest(), **self._kw("", timeout))).status

        return await self._retrying(call)

    async def store(
        self,
        name: str,
        data: StoreInput,
        *,
        if_absent: bool = False,
        if_version: Optional[int] = None,
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> DatasetInfo:
        cond = c.condition(if_absent, if_version)
        source = c.arrow_source(data)
        bar = self._progress(progress, f"store {name}", source.rows)
        try:
            resp = await self._upload("Store", c.store_requests(name, cond, source, bar), name, timeout)
        finally:
            bar.close()
        return DatasetInfo._from_pb(resp.dataset)

    async def store_batch(
        self,
        datasets: Union[Mapping[str, StoreInput], Iterable[Tuple[str, StoreInput]]],
        *,
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> list[DatasetInfo]:
        items = c.batch_items(datasets)
        bar = self._progress(progress, "store_batch", c.batch_rows(items))
        try:
            resp = await self._upload("StoreBatch", c.batch_requests(items, bar), items[0][0], timeout)
        finally:
            bar.close()
        return [DatasetInfo._from_pb(d) for d in resp.datasets]

    def _get_upload_stub(self) -> Any:
        # Uploads run on grpc's threaded stack: grpc.aio reports a failed write as INTERNAL
        # ("Internal error from Core") instead of the server's status when the server ends a
        # client stream early (grpc/grpc#36066), which would turn e.g. INVALID_ARGUMENT or
        # RESOURCE_EXHAUSTED into INTERNAL. The threaded stack reports the server's status.
        if self._upload_stub is None:
            cfg = self._cfg
            if cfg.credentials is not None:
                self._upload_channel = grpc.secure_channel(cfg.target, cfg.credentials, options=cfg.channel_options)
            else:
                self._upload_channel = grpc.insecure_channel(cfg.target, options=cfg.channel_options)
            self._upload_stub = pb_grpc.PolarwayStub(self._upload_channel)
        return self._upload_stub

    async def _upload(self, method: str, requests: Iterator[pb.StoreRequest], key: str, timeout: Any) -> Any:
        failure: list[BaseException] = []
        # The requests are encoded in grpc's sending thread, off the event loop.
        future = getattr(self._get_upload_stub(), method).future(c.guarded(requests, failure), **self._kw(key, timeout))
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake(_: Any) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        future.add_done_callback(wake)
        try:
            await done
        except asyncio.CancelledError:
            future.cancel()  # nothing is committed
            raise
        try:
            return future.result()
        except grpc.RpcError as e:
            if failure:
                raise failure[0] from None
            raise from_rpc_error(e) from None

    async def load(
        self,
        name: str,
        columns: Optional[Iterable[str]] = None,
        version: Optional[int] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> Any:
        c.check_format(format)
        req = c.load_request(name, columns, version)
        path = self._flight.get()
        if path is not None:
            table = await self._retrying_typed(
                lambda: asyncio.to_thread(
                    load_table,
                    path,
                    req,
                    self._cfg.resolve_timeout(timeout),
                    lambda rows: self._progress(progress, f"load {name}", rows),
                )
            )
            if table is not None:
                return c.convert(table, format)
        stub = await self._get_stub()

        async def attempt() -> list[bytes]:
            return [m.ipc async for m in stub.Load(req, **self._kw(name, timeout)) if m.ipc]

        chunks = await self._retrying(attempt)
        chunks.reverse()  # popped from the end: each chunk is dropped once decoded
        table = await asyncio.to_thread(c.read_table, lambda: chunks.pop() if chunks else None)
        return c.convert(table, format)

    def load_stream(
        self,
        name: str,
        columns: Optional[Iterable[str]] = None,
        version: Optional[int] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
        progress: Optional[bool] = None,
    ) -> AsyncFrameStream:
        c.check_format(format)
        return AsyncFrameStream(self, c.load_request(name, columns, version), format, timeout, progress)

    async def query(
        self,
        sql: str,
        into: Optional[str] = None,
        *,
        format: Format = "polars",
        timeout: Any = DEFAULT,
    ) -> Any:
        c.check_format(format)
        req = pb.QueryRequest(sql=sql, into=into)
        key = c.query_routing_key(sql, into)
        stub = await self._get_stub()
        if into is not None:

            async def stored() -> DatasetInfo:
                async for msg in stub.Query(req, **self._kw(key, timeout)):
                    if msg.HasField("stored"):
                        return DatasetInfo._from_pb(msg.stored)
                raise c.no_result("Query")

            return await self._once(stored)

        async def attempt() -> list[bytes]:
            return [m.ipc async for m in stub.Query(req, **self._kw(key, timeout)) if m.ipc]

        chunks = await self._retrying(attempt)
        chunks.reverse()
        table = await asyncio.to_thread(c.read_table, lambda: chunks.pop() if chunks else None)
        return c.convert(table, format)

    async def list(self, prefix: str = "", *, timeout: Any = DEFAULT) -> list[DatasetInfo]:
        stub = await self._get_stub()

        async def call() -> Any:
            return await stub.List(pb.ListRequest(prefix=prefix), **self._kw("", timeout))

        return [DatasetInfo._from_pb(d) for d in (await self._retrying(call)).datasets]

    async def describe(self, name: str, version: Optional[int] = None, *, timeout: Any = DEFAULT) -> DatasetInfo:
        stub = await self._get_stub()
        req = pb.DescribeRequest(name=name, version=version)

        async def call() -> Any:
            return await stub.Describe(req, **self._kw(name, timeout))

        return DatasetInfo._from_pb(await self._retrying(call))

    async def delete(self, name: str, *, timeout: Any = DEFAULT) -> int:
        stub = await self._get_stub()

        async def call() -> int:
            return (await stub.Delete(pb.DeleteRequest(name=name), **self._kw(name, timeout))).version

        return await self._once(call)

    async def cache_stats(self, *, timeout: Any = DEFAULT) -> dict[str, Any]:
        stub = await self._get_stub()

        async def call() -> Any:
            return await stub.CacheStats(pb.CacheStatsRequest(), **self._kw("", timeout))

        return c.cache_stats_dict(await self._retrying(call))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
        if self._upload_channel is not None:
            self._upload_channel.close()
            self._upload_channel = self._upload_stub = None
        self._flight.close()

    async def __aenter__(self) -> "AsyncDistributedClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncDistributedClient({self._cfg.target!r})"


__all__ = ["AsyncDistributedClient", "AsyncFrameStream", "PolarwayError"]
