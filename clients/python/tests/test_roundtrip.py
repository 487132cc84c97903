"""Data goes up and comes back equal: Polars, pyarrow and pandas inputs over many dtypes, sync and
async, whole and streamed, projections, versions, batches and the catalogue calls."""

from __future__ import annotations

import datetime as dt
import decimal

import grpc
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import polarway
from polarway import DatasetInfo

UTC = dt.timezone.utc


def wide_polars() -> pl.DataFrame:
    """Every Polars dtype family, each column with a null."""
    return pl.DataFrame(
        [
            pl.Series("i8", [-128, 0, 127, None], pl.Int8),
            pl.Series("i16", [-32768, 1, 32767, None], pl.Int16),
            pl.Series("i32", [-(2**31), 2, 2**31 - 1, None], pl.Int32),
            pl.Series("i64", [-(2**63), 3, 2**63 - 1, None], pl.Int64),
            pl.Series("u8", [0, 1, 255, None], pl.UInt8),
            pl.Series("u16", [0, 1, 65535, None], pl.UInt16),
            pl.Series("u32", [0, 1, 2**32 - 1, None], pl.UInt32),
            pl.Series("u64", [0, 1, 2**64 - 1, None], pl.UInt64),
            pl.Series("f32", [1.5, float("inf"), float("nan"), None], pl.Float32),
            pl.Series("f64", [-0.0, 1e308, float("-inf"), None], pl.Float64),
            pl.Series("bool", [True, False, True, None], pl.Boolean),
            pl.Series("str", ["BTC", "ünïcødé ✓", "", None], pl.String),
            pl.Series("bin", [b"\x00\x01", b"", b"\xff" * 10, None], pl.Binary),
            pl.Series("date", [dt.date(1970, 1, 1), dt.date(2026, 2, 3), dt.date(1900, 12, 31), None], pl.Date),
            pl.Series(
                "dt_us",
                [dt.datetime(2026, 2, 3, 12, 0, 0, 123456), dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1), None],
                pl.Datetime("us"),
            ),
            pl.Series(
                "dt_ns_utc",
                [
                    dt.datetime(2026, 2, 3, tzinfo=UTC),
                    dt.datetime(2000, 1, 1, tzinfo=UTC),
                    dt.datetime(2026, 2, 1, 23, 59, tzinfo=UTC),
                    None,
                ],
                pl.Datetime("ns", "UTC"),
            ),
            pl.Series(
                "dt_ms_paris", [dt.datetime(2026, 2, 3, tzinfo=UTC)] * 3 + [None], pl.Datetime("ms", "UTC")
            ).dt.convert_time_zone("Europe/Paris"),
            pl.Series(
                "dur",
                [dt.timedelta(seconds=1), dt.timedelta(days=-3), dt.timedelta(microseconds=7), None],
                pl.Duration("us"),
            ),
            pl.Series("time", [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 30), None], pl.Time),
            pl.Series(
                "dec",
                [decimal.Decimal("1.25"), decimal.Decimal("-99999999.99"), decimal.Decimal("0.00"), None],
                pl.Decimal(10, 2),
            ),
            pl.Series("list_i64", [[1, 2, 3], [], None, [None, 4]], pl.List(pl.Int64)),
            pl.Series("list_str", [["a"], ["b", None], [], None], pl.List(pl.String)),
            pl.Series(
                "struct",
                [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 3, "b": None}, None],
                pl.Struct({"a": pl.Int64, "b": pl.String}),
            ),
            pl.Series("cat", ["BTC", "ETH", "BTC", None], pl.Categorical),
            pl.Series("null", [None, None, None, None], pl.Null),
        ]
    )


def test_polars_every_dtype(client, name):
    df = wide_polars()
    info = client.store(name, df)
    assert (info.name, info.version, info.rows) == (name, 1, 4)
    loaded = client.load(name)
    assert loaded.schema == df.schema
    assert_frame_equal(loaded, df)


def test_polars_many_rows_many_chunks(client, name):
    """A frame whose IPC stream spans many 1 MiB chunks and many record batches."""
    n = 600_000
    df = pl.DataFrame(
        {
            "id": pl.int_range(n, eager=True),
            "x": pl.int_range(n, eager=True).cast(pl.Float64) / 7,
            "sym": pl.Series(["BTC", "ETH", "SOL"] * (n // 3)),
        }
    )
    assert client.store(name, df).rows == n
    assert_frame_equal(client.load(name), df)


def test_empty_frame(client, name):
    df = pl.DataFrame(schema={"a": pl.Int64, "s": pl.String})
    assert client.store(name, df).rows == 0
    assert_frame_equal(client.load(name), df)
    assert list(client.load_stream(name)) == [] or all(f.height == 0 for f in client.load_stream(name))


# (arrow type, values) pairs: each is stored alone and must come back with the same type and values.
ARROW_TYPES = [
    (pa.int8(), [1, None, -8]),
    (pa.int16(), [1, None, -16]),
    (pa.int32(), [1, None, -32]),
    (pa.int64(), [1, None, -64]),
    (pa.uint8(), [1, None, 255]),
    (pa.uint16(), [1, None, 65535]),
    (pa.uint32(), [1, None, 2**32 - 1]),
    (pa.uint64(), [1, None, 2**64 - 1]),
    (pa.float32(), [1.5, None, -2.25]),
    (pa.float64(), [1.5, None, float("inf")]),
    (pa.bool_(), [True, None, False]),
    (pa.string(), ["a", None, "ünï"]),
    (pa.large_string(), ["a", None, "ünï"]),
    (pa.binary(), [b"a", None, b"\x00"]),
    (pa.large_binary(), [b"a", None, b"\x00"]),
    (pa.binary(3), [b"abc", None, b"xyz"]),
    (pa.date32(), [dt.date(2026, 2, 3), None, dt.date(1969, 12, 31)]),
    (pa.timestamp("s"), [dt.datetime(2026, 2, 3), None, dt.datetime(1970, 1, 1)]),
    (pa.timestamp("ms", tz="UTC"), [dt.datetime(2026, 2, 3, tzinfo=UTC), None, dt.datetime(1970, 1, 1, tzinfo=UTC)]),
    (
        pa.timestamp("us", tz="America/New_York"),
        [dt.datetime(2026, 2, 3, tzinfo=UTC), None, dt.datetime(1999, 1, 1, tzinfo=UTC)],
    ),
    (pa.timestamp("ns"), [dt.datetime(2026, 2, 3, 1, 2, 3), None, dt.datetime(2262, 1, 1)]),
    (pa.time32("ms"), [dt.time(1, 2, 3), None, dt.time(0)]),
    (pa.time64("us"), [dt.time(1, 2, 3, 4), None, dt.time(0)]),
    (pa.time64("ns"), [dt.time(1, 2, 3, 4), None, dt.time(0)]),
    (pa.duration("s"), [dt.timedelta(seconds=5), None, dt.timedelta(days=-1)]),
    (pa.duration("ms"), [dt.timedelta(seconds=5), None, dt.timedelta(days=-1)]),
    (pa.duration("us"), [dt.timedelta(seconds=5), None, dt.timedelta(days=-1)]),
    (pa.duration("ns"), [dt.timedelta(seconds=5), None, dt.timedelta(days=-1)]),
    (pa.decimal128(38, 10), [decimal.Decimal("1.5"), None, decimal.Decimal("-12345678901234567890.0123456789")]),
    (pa.list_(pa.int32()), [[1, 2], None, []]),
    (pa.large_list(pa.string()), [["a"], None, [None]]),
    (pa.struct([("x", pa.int64()), ("y", pa.string())]), [{"x": 1, "y": "a"}, None, {"x": None, "y": None}]),
    (pa.map_(pa.string(), pa.int64()), [[("a", 1)], None, []]),
    (pa.dictionary(pa.int32(), pa.string()), ["BTC", None, "ETH"]),
    (pa.null(), [None, None, None]),
]


@pytest.mark.parametrize("typ,values", ARROW_TYPES, ids=[str(t) for t, _ in ARROW_TYPES])
def test_arrow_types(client, name, typ, values):
    table = pa.table({"c": pa.array(values, type=typ), "row": pa.array([0, 1, 2], pa.int64())})
    client.store(name, table)
    loaded = client.load(name, format="arrow")
    assert isinstance(loaded, pa.Table)
    assert loaded.schema.field("c").type == typ
    assert loaded.combine_chunks().equals(table), (loaded.to_pylist(), table.to_pylist())


def test_arrow_record_batch_reader_is_streamed(client, name):
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    batches = (
        pa.record_batch([pa.array(range(i * 1000, (i + 1) * 1000)), pa.array([f"r{i}"] * 1000)], schema=schema)
        for i in range(50)
    )
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    assert client.store(name, reader).rows == 50_000
    loaded = client.load(name, format="arrow")
    assert loaded.schema == schema
    assert loaded.column("id").to_pylist() == list(range(50_000))


def test_arrow_record_batch_and_lazyframe(client, name):
    batch = pa.record_batch({"a": [1, 2, 3]})
    client.store(name, batch)
    assert client.load(name)["a"].to_list() == [1, 2, 3]
    client.store(name, pl.LazyFrame({"a": [4, 5]}).select(pl.col("a") * 2))
    assert client.load(name)["a"].to_list() == [8, 10]


def test_pandas_roundtrip(client, name):
    pdf = pd.DataFrame(
        {
            "i64": [1, 2, 3],
            "f64": [1.5, float("nan"), -3.0],
            "bool": [True, False, True],
            "str": ["BTC", "ETH", None],
            "ts": pd.to_datetime(["2026-02-03", "2026-02-01", "1970-01-01"]),
            "ts_utc": pd.to_datetime(["2026-02-03 12:00", "2026-02-01 00:00", "1970-01-01 00:00"], utc=True),
            "td": pd.to_timedelta([1, 2, 3], unit="s"),
            "cat": pd.Categorical(["a", "b", "a"]),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
        }
    )
    client.store(name, pdf)
    back = client.load(name, format="pandas")
    # The server keeps Arrow schema metadata, where pandas records its dtypes: even a nullable
    # Int64 extension column comes back as it went.
    pd.testing.assert_frame_equal(back, pdf)
    assert client.load(name, format="arrow").schema.field("nullable").type == pa.int64()
    # and as Polars: the same values
    assert client.load(name)["i64"].to_list() == [1, 2, 3]


def test_projection_and_versions(client, name):
    v1 = client.store(name, pl.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [True, False]}))
    v2 = client.store(
        name, pl.DataFrame({"a": [3], "b": ["z"], "c": [None]}, schema={"a": pl.Int64, "b": pl.String, "c": pl.Boolean})
    )
    assert (v1.version, v2.version) == (1, 2)
    assert client.load(name, columns=["c", "a"]).columns == ["c", "a"]
    assert client.load(name, ["b"], version=1)["b"].to_list() == ["x", "y"]
    assert client.load(name)["a"].to_list() == [3]
    assert client.describe(name).version == 2
    assert client.describe(name, version=1).rows == 2


def test_load_stream_frames(client, name):
    n = 300_000
    df = pl.DataFrame({"id": pl.int_range(n, eager=True), "v": pl.int_range(n, eager=True) * 2})
    client.store(name, df)
    with client.load_stream(name) as stream:
        assert stream.dataset.rows == n and stream.dataset.name == name
        frames = list(stream)
    assert all(isinstance(f, pl.DataFrame) for f in frames)
    assert_frame_equal(pl.concat(frames), df)
    batches = list(client.load_stream(name, columns=["v"], format="arrow"))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert sum(b.num_rows for b in batches) == n
    # stopping early cancels the rest; the client keeps working
    stream = client.load_stream(name)
    next(stream)
    stream.close()
    assert list(stream) == []
    assert client.health_check() == "OK"


def test_store_batch_and_catalogue(client, name):
    infos = client.store_batch({f"{name}_a": pl.DataFrame({"x": [1]}), f"{name}_b": pa.table({"y": ["s", "t"]})})
    assert [(i.name, i.rows) for i in infos] == [(f"{name}_a", 1), (f"{name}_b", 2)]
    listed = client.list(prefix=name)
    assert [d.name for d in listed] == [f"{name}_a", f"{name}_b"]
    assert all(isinstance(d, DatasetInfo) and d.version == 1 for d in listed)
    desc = client.describe(f"{name}_b")
    assert [(c.name, c.nullable) for c in desc.columns] == [("y", True)]
    assert "Utf8" in desc.columns[0].data_type
    assert desc.bytes > 0 and desc.created.year >= 2024
    assert client.delete(f"{name}_a") == 1
    assert [d.name for d in client.list(name)] == [f"{name}_b"]
    # pairs work too
    assert len(client.store_batch([(f"{name}_c", pl.DataFrame({"x": [1]}))])) == 1


def test_query_and_query_into(client, name):
    client.store(name, pl.DataFrame({"symbol": ["BTC", "ETH", "BTC"], "price": [10, 20, 30]}))
    res = client.query(f"SELECT symbol, SUM(price) AS total FROM {name} GROUP BY symbol ORDER BY symbol")
    assert res.to_dict(as_series=False) == {"symbol": ["BTC", "ETH"], "total": [40, 20]}
    assert isinstance(client.query(f"SELECT * FROM {name}", format="arrow"), pa.Table)
    info = client.query(f"SELECT * FROM {name} WHERE price > 15", into=f"{name}_big")
    assert (info.name, info.rows) == (f"{name}_big", 2)
    assert sorted(client.load(f"{name}_big")["price"].to_list()) == [20, 30]
    empty = client.query(f"SELECT * FROM {name} WHERE price < 0")
    assert empty.height == 0 and empty.columns == ["symbol", "price"]


def test_conditional_stores(client, name):
    df = pl.DataFrame({"a": [1]})
    assert client.store(name, df, if_absent=True).version == 1
    assert client.store(name, df, if_version=1).version == 2
    with pytest.raises(polarway.AlreadyExists):
        client.store(name, df, if_absent=True)
    with pytest.raises(polarway.Aborted):
        client.store(name, df, if_version=1)


def test_cache_stats_and_health(client, name):
    client.store(name, pl.DataFrame({"a": [1, 2]}))
    client.load(name)
    client.load(name)
    stats = client.cache_stats()
    for key in ("hit_rate", "hits", "misses", "bytes", "capacity", "entries", "evictions"):
        assert key in stats
    assert stats["hits"] >= 1 and 0 < stats["hit_rate"] <= 1 and stats["capacity"] > 0
    assert client.health_check() == "OK"


def test_progress_bars(client, name, capsys):
    df = pl.DataFrame({"a": range(10_000)})
    client.store(name, df, progress=True)
    client.load(name, progress=True)
    assert sum(f.height for f in client.load_stream(name, progress=True)) == 10_000
    err = capsys.readouterr().err
    assert f"store {name}" in err and f"load {name}" in err and "10.0k" in err


class Recorder(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Records each call's method and metadata as it leaves the client (the call goes on to the
    real server unchanged)."""

    def __init__(self):
        self.calls = []

    def _record(self, details):
        self.calls.append((details.method.rsplit("/", 1)[1], dict(details.metadata or ())))

    def intercept_unary_unary(self, cont, details, request):
        self._record(details)
        return cont(details, request)

    intercept_unary_stream = intercept_unary_unary

    def intercept_stream_unary(self, cont, details, request_iterator):
        self._record(details)
        return cont(details, request_iterator)

    intercept_stream_stream = intercept_stream_unary


def test_routing_key_and_token_on_every_call(start_server, name):
    server = start_server("--auth-token", "tok")
    rec = Recorder()
    with server.client(auth_token="tok", interceptors=[rec]) as c:
        c.health_check()
        c.store(name, pl.DataFrame({"a": [1]}))
        c.store_batch({f"{name}_2": pl.DataFrame({"a": [1]}), f"{name}_3": pl.DataFrame({"a": [1]})})
        c.load(name)
        list(c.load_stream(name))
        c.query(f"SELECT * FROM {name}")
        c.query(f"SELECT * FROM {name}", into=f"{name}_q")
        c.query("SELECT 1 AS one")
        c.describe(name)
        c.list()
        c.cache_stats()
        c.delete(name)
    keys = [(m, md.get("x-polarway-key")) for m, md in rec.calls]
    assert keys == [
        ("Health", None),
        ("Store", name),
        ("StoreBatch", f"{name}_2"),
        ("Load", name),
        ("Load", name),
        ("Query", name),
        ("Query", f"{name}_q"),
        ("Query", None),
        ("Describe", name),
        ("List", None),
        ("CacheStats", None),
        ("Delete", name),
    ]
    assert all(md["authorization"] == "Bearer tok" and len(md["x-request-id"]) == 32 for _, md in rec.calls)


def test_timeout_default_and_override(server, name):
    # A deadline already past when the call starts: a query can now answer within a millisecond.
    with server.client(timeout=1e-6) as c:
        with pytest.raises(polarway.DeadlineExceeded):
            c.query("SELECT 1")
        assert c.query("SELECT 1 AS one", timeout=30)["one"].to_list() == [1]
        assert c.health_check(timeout=None) == "OK"


# -- the same through AsyncDistributedClient -------------------------------------------------


async def test_async_everything(server, name):
    df = wide_polars()
    async with server.aclient() as c:
        assert await c.health_check() == "OK"
        info = await c.store(name, df)
        assert info.rows == 4
        assert_frame_equal(await c.load(name), df)
        assert (await c.load(name, columns=["i8"], format="arrow")).column_names == ["i8"]
        frames = [f async for f in c.load_stream(name)]
        assert_frame_equal(pl.concat(frames), df)
        stream = await c.load_stream(name, format="arrow")
        assert stream.dataset.rows == 4
        assert sum([b.num_rows async for b in stream]) == 4
        res = await c.query(f"SELECT COUNT(*) AS n FROM {name}")
        assert res["n"].to_list() == [4]
        stored = await c.query(f"SELECT i8 FROM {name}", into=f"{name}_q")
        assert stored.rows == 4
        infos = await c.store_batch({f"{name}_x": pd.DataFrame({"a": [1]}), f"{name}_y": pa.table({"b": [2]})})
        assert [i.name for i in infos] == [f"{name}_x", f"{name}_y"]
        assert [d.name for d in await c.list(name)] == [name, f"{name}_q", f"{name}_x", f"{name}_y"]
        assert (await c.describe(name)).columns[0].name == "i8"
        assert await c.delete(f"{name}_x") == 1
        assert "hit_rate" in await c.cache_stats()
        with pytest.raises(polarway.NotFound):
            await c.load(f"{name}_missing")
        with pytest.raises(polarway.NotFound):
            [f async for f in c.load_stream(f"{name}_missing")]
        with pytest.raises(polarway.InvalidArgument):
            await c.store("bad name!", df)
        with pytest.raises(polarway.AlreadyExists):
            await c.store(name, df, if_absent=True)
        with pytest.raises(polarway.PermissionDenied):
            await c.query("SELECT * FROM read_csv('/etc/passwd')")


async def test_async_big_stream(server, name):
    n = 400_000
    df = pl.DataFrame({"id": pl.int_range(n, eager=True)})
    async with server.aclient() as c:
        await c.store(name, df)
        total, count = 0, 0
        async for f in c.load_stream(name):
            total += f["id"].sum()
            count += 1
        assert total == n * (n - 1) // 2 and count >= 1


@pytest.mark.parametrize(
    "sql,into,key",
    [
        ("SELECT * FROM trades_20260203", None, "trades_20260203"),
        ('select a\nfrom   "my.data-set" t join b on true', None, "my.data-set"),
        ("SELECT symbol FROM parquet_scan('/data/cold/trades_*.parquet') GROUP BY symbol", None, ""),
        ("SELECT 1", None, ""),
        ("SELECT * FROM a", "result_1", "result_1"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", None, "x"),
    ],
)
def test_query_routing_key(sql, into, key):
    from polarway._common import query_routing_key

    assert query_routing_key(sql, into) == key
