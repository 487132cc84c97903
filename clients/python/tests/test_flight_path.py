"""Loads over Arrow Flight: the client's default when the server offers it. The same results,
errors and progress as over polarway.v1 (``flight=False``), on plaintext, TLS and tokens."""

from __future__ import annotations

import datetime as dt

import grpc
import polars as pl
import pyarrow as pa
import pytest

import polarway
from certs import make_certs
from polarway._flight import flight_error


def frame(n: int = 50_000) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i": pl.Series(range(n), dtype=pl.Int64),
            "u": pl.Series([i % 250 for i in range(n)], dtype=pl.UInt8),
            "f": [i / 3 for i in range(n)],
            "s": [None if i % 7 == 0 else f"v{i}" for i in range(n)],
            "c": pl.Series(["a", "b", "c", "d"] * (n // 4), dtype=pl.Categorical),
            "t": pl.Series([dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i) for i in range(n)]).dt.replace_time_zone(
                "UTC"
            ),
            "l": [[i, i + 1] for i in range(n)],
        }
    )


def test_loads_go_over_flight_and_match_grpc(server, name):
    df = frame()
    with server.client() as c, server.client(flight=False) as grpc_only:
        c.store(name, df)
        c.store(name, df.head(10))
        assert c.load(name).equals(df.head(10))
        assert c._flight.path is not None and c._flight.path.supported, "the load did not go over Flight"
        assert grpc_only._flight.get() is None
        for kwargs in ({}, {"version": 1}, {"columns": ["s", "i"]}, {"version": 1, "columns": ["t"]}):
            for fmt in ("polars", "arrow"):
                over_flight = c.load(name, format=fmt, **kwargs)
                over_grpc = grpc_only.load(name, format=fmt, **kwargs)
                assert over_flight.equals(over_grpc), (kwargs, fmt)
        assert c.load(name, version=1, format="arrow").schema == grpc_only.load(name, version=1, format="arrow").schema
        with c.load_stream(name, version=1) as stream:
            assert stream.dataset.version == 1 and stream.dataset.rows == len(df)
            assert [col.name for col in stream.dataset.columns] == df.columns
            assert pl.concat(list(stream)).equals(df)
        with c.load_stream(name, version=1, columns=["i"]) as stream:
            first = next(stream)
            assert first.columns == ["i"]
        # Closing a stream early cancels it; the client goes on.
        assert c.load(name, columns=["i"])["i"].to_list() == list(range(10))


async def test_async_loads_go_over_flight(server, name):
    df = frame(20_000)
    with server.client() as c:
        c.store(name, df)
    async with server.aclient() as a, server.aclient(flight=False) as grpc_only:
        assert (await a.load(name)).equals(df)
        assert a._flight.path is not None and a._flight.path.supported
        assert (await a.load(name, columns=["i"], format="arrow")).equals(
            await grpc_only.load(name, columns=["i"], format="arrow")
        )
        with pytest.raises(polarway.NotFound):
            await a.load(f"{name}_missing")
        assert grpc_only._flight.get() is None


def test_errors_over_flight_are_the_grpc_errors(start_server, name):
    s = start_server("--auth-token", "s3cret")
    with s.client(auth_token="s3cret") as good, s.client(auth_token="s3cret", flight=False) as good_grpc:
        good.store(name, pl.DataFrame({"a": [1, 2]}))
        cases = [
            (lambda c: c.load(f"{name}_missing"), polarway.NotFound),
            (lambda c: c.load(name, version=9), polarway.NotFound),
            (lambda c: c.load(name, columns=["nope"]), polarway.InvalidArgument),
            (lambda c: c.load("bad name!"), polarway.InvalidArgument),
            (lambda c: c.load_stream(f"{name}_missing"), polarway.NotFound),
        ]
        for call, cls in cases:
            errors = []
            for c in (good, good_grpc):
                with pytest.raises(cls) as e:
                    call(c)
                errors.append(e.value)
            assert errors[0].code == errors[1].code
            assert errors[0].message.split(";")[0] == errors[1].message.split(";")[0]
        assert good._flight.path is not None and good._flight.path.supported
    for token in (None, "wrong"):
        with s.client(auth_token=token) as c:
            with pytest.raises(polarway.Unauthenticated) as e:
                c.load(name)
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_flight_over_tls_and_mutual_tls(start_server, name, tmp_path):
    certs = make_certs(tmp_path)
    s = start_server(
        "--tls-cert", str(certs["server_cert"]), "--tls-key", str(certs["server_key"]), "--tls-ca", str(certs["ca"])
    )
    with s.client(ca_cert=certs["ca"], client_cert=certs["client_cert"], client_key=certs["client_key"]) as c:
        c.store(name, pl.DataFrame({"a": [1, 2, 3]}))
        assert c.load(name)["a"].to_list() == [1, 2, 3]
        assert c._flight.path is not None and c._flight.path.supported
    # Without a client certificate the server refuses the connection, over Flight as over gRPC.
    with s.client(ca_cert=certs["ca"], retries=0) as c:
        with pytest.raises(polarway.PolarwayError):
            c.load(name)


def test_a_client_with_its_own_credentials_object_stays_on_grpc(server, name):
    with server.client(credentials=grpc.local_channel_credentials()) as c:
        c.store(name, pl.DataFrame({"a": [1]}))
        assert c.load(name)["a"].to_list() == [1]
        assert c._flight.get() is None


@pytest.mark.parametrize(
    "text,cls,code",
    [
        (
            'Flight returned not found error, with message: there is no dataset "x". '
            "gRPC client debug context: UNKNOWN:...",
            polarway.NotFound,
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "Flight returned invalid argument error, with message: bad name. gRPC client debug context: x",
            polarway.InvalidArgument,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            'Flight returned unauthorized error, with message: alice may not call Load on dataset "b"',
            polarway.PermissionDenied,
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "Flight returned resource exhausted error, with message: too many calls",
            polarway.ResourceExhausted,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (
            "Flight returned timeout error, with message: Deadline Exceeded",
            polarway.DeadlineExceeded,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ),
        (
            "Flight returned unavailable error, with message: failed to connect to all addresses",
            polarway.Unavailable,
            grpc.StatusCode.UNAVAILABLE,
        ),
        (
            'gRPC returned aborted error, with message: dataset "x" is not at version 1. gRPC client debug context: y',
            polarway.Aborted,
            grpc.StatusCode.ABORTED,
        ),
        (
            'gRPC returned already exists error, with message: dataset "x" already exists',
            polarway.AlreadyExists,
            grpc.StatusCode.ALREADY_EXISTS,
        ),
    ],
)
def test_flight_error_texts(text, cls, code):
    err = flight_error(pa.ArrowException(text))
    assert isinstance(err, cls) and err.code == code
    assert "Flight returned" not in err.message and "debug context" not in err.message
