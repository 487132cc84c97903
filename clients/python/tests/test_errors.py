"""Each typed error is raised for its real cause, carrying the server's code and message."""

from __future__ import annotations

from pathlib import Path

import grpc
import polars as pl
import pyarrow as pa
import pytest

import polarway
from conftest import free_port


def check(err: pytest.ExceptionInfo, cls: type, code: grpc.StatusCode, *words: str) -> None:
    e = err.value
    assert type(e) is cls and isinstance(e, polarway.PolarwayError)
    assert e.code == code
    assert e.message and all(w.lower() in e.message.lower() for w in words), e.message
    assert str(e).startswith(code.name)


def test_invalid_argument(client, name):
    with pytest.raises(polarway.InvalidArgument) as err:
        client.store("bad name!", pl.DataFrame({"a": [1]}))
    check(err, polarway.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "name")
    assert isinstance(err.value, ValueError)
    with pytest.raises(polarway.InvalidArgument) as err:
        client.query("SELEC nonsense")
    check(err, polarway.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT)
    client.store(name, pl.DataFrame({"a": [1]}))
    with pytest.raises(polarway.InvalidArgument) as err:
        client.load(name, columns=["nope"])
    check(err, polarway.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "nope")


def test_not_found(client, name):
    for call in (
        lambda: client.load(name),
        lambda: client.describe(name),
        lambda: client.delete(name),
        lambda: client.load_stream(name),
        lambda: client.query(f"SELECT * FROM {name}"),
    ):
        with pytest.raises(polarway.NotFound) as err:
            call()
        assert err.value.code in (grpc.StatusCode.NOT_FOUND,) and name in err.value.message
    client.store(name, pl.DataFrame({"a": [1]}))
    with pytest.raises(polarway.NotFound) as err:
        client.load(name, version=7)
    check(err, polarway.NotFound, grpc.StatusCode.NOT_FOUND)


def test_condition_failures(client, name):
    df = pl.DataFrame({"a": [1]})
    client.store(name, df)
    with pytest.raises(polarway.AlreadyExists) as err:
        client.store(name, df, if_absent=True)
    check(err, polarway.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS)
    with pytest.raises(polarway.Aborted) as err:
        client.store(name, df, if_version=5)
    check(err, polarway.Aborted, grpc.StatusCode.ABORTED)
    assert isinstance(err.value, polarway.ConditionFailed)
    assert client.describe(name).version == 1  # neither failed store wrote anything


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '/tmp/polarway-py-escape.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "ATTACH '/tmp/polarway-py-escape.db' AS x",
        "SET memory_limit = '100GB'",
        "INSTALL httpfs",
    ],
)
def test_permission_denied(client, sql):
    with pytest.raises(polarway.PermissionDenied) as err:
        client.query(sql)
    check(err, polarway.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED)


def test_unauthenticated(start_server, name):
    server = start_server("--auth-token", "s3cret")
    with (
        server.client() as anonymous,
        server.client(auth_token="wrong") as wrong,
        server.client(auth_token="s3cret") as good,
    ):
        for c in (anonymous, wrong):
            with pytest.raises(polarway.Unauthenticated) as err:
                c.list()
            check(err, polarway.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED)
            with pytest.raises(polarway.Unauthenticated):
                c.store(name, pl.DataFrame({"a": [1]}))
        assert good.store(name, pl.DataFrame({"a": [1]})).version == 1
        assert [d.name for d in good.list()] == [name]


def test_resource_exhausted(start_server, name):
    server = start_server("--max-upload-bytes", "100000")
    with server.client() as c:
        with pytest.raises(polarway.ResourceExhausted) as err:
            c.store(name, pl.DataFrame({"a": range(1_000_000)}))
        check(err, polarway.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED)
        with pytest.raises(polarway.NotFound):
            c.describe(name)
        assert c.store(name, pl.DataFrame({"a": range(10)})).rows == 10


def test_unavailable():
    with polarway.DistributedClient("127.0.0.1", free_port(), retries=0) as c:
        with pytest.raises(polarway.Unavailable) as err:
            c.health_check()
        assert err.value.code == grpc.StatusCode.UNAVAILABLE and isinstance(err.value, ConnectionError)


def test_deadline_exceeded_client_and_server(client, start_server):
    slow = "SELECT SUM(a.range * b.range) FROM range(100000) a, range(100000) b"
    with pytest.raises(polarway.DeadlineExceeded) as err:
        client.query(slow, timeout=0.5)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and isinstance(err.value, TimeoutError)
    server = start_server("--query-timeout", "1")
    with server.client() as c:
        with pytest.raises(polarway.DeadlineExceeded) as err:
            c.query(slow)
        check(err, polarway.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_bad_input_on_the_client(client):
    with pytest.raises(TypeError, match="store\\(\\) takes"):
        client.store("x", {"a": [1]})
    with pytest.raises(ValueError, match="format"):
        client.load("x", format="csv")
    with pytest.raises(ValueError, match="either"):
        client.store("x", pl.DataFrame({"a": [1]}), if_absent=True, if_version=1)
    with pytest.raises(ValueError, match="client_key"):
        polarway.DistributedClient("127.0.0.1", 1, client_cert=b"x")


def test_internal(start_server, name):
    """A stored object damaged behind the server's back is a server failure, not bad input."""
    server = start_server("--cache-size", "0")  # no cache: the load must read the object
    with server.client() as c:
        c.store(name, pl.DataFrame({"a": range(1000)}))
        objects = list((Path(server.data_dir) / "state/datasets" / name).glob("data-*.parquet"))
        assert len(objects) == 1, objects
        objects[0].write_bytes(b"this is not parquet" * 100)
        with pytest.raises(polarway.Internal) as err:
            c.load(name)
        check(err, polarway.Internal, grpc.StatusCode.INTERNAL, "parquet")


async def test_async_uploads_report_the_servers_status(start_server, name):
    """The server ends these uploads while the client is still sending: the error must be the
    server's, every time (grpc.aio alone would often report INTERNAL)."""
    server = start_server("--max-upload-bytes", "100000")
    big = pl.DataFrame({"a": range(2_000_000)})
    async with server.aclient() as c:
        for _ in range(10):
            with pytest.raises(polarway.ResourceExhausted):
                await c.store(name, big)
            with pytest.raises(polarway.InvalidArgument):
                await c.store("bad name!", big)
            with pytest.raises(polarway.InvalidArgument):
                await c.store_batch({"bad name!": big, name: big})
        assert (await c.store(name, pl.DataFrame({"a": [1]}))).version == 1


def _broken_reader() -> pa.RecordBatchReader:
    schema = pa.schema([("a", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array(range(100_000))], schema=schema)
        raise RuntimeError("the source broke")

    return pa.RecordBatchReader.from_batches(schema, batches())


def test_an_input_that_fails_midway_commits_nothing(client, name):
    with pytest.raises(RuntimeError, match="the source broke"):
        client.store(name, _broken_reader())
    with pytest.raises(polarway.NotFound):
        client.describe(name)


async def test_async_an_input_that_fails_midway_commits_nothing(server, name):
    async with server.aclient() as c:
        with pytest.raises(RuntimeError, match="the source broke"):
            await c.store(name, _broken_reader())
        with pytest.raises(polarway.NotFound):
            await c.describe(name)
