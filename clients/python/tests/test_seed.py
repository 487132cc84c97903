"""Every Python snippet of the user guide runs as written (only host and port adapted) against a
real server, and returns the right data. The guide's absolute paths (/data, /certs) are made real
inside private mount namespaces, so nothing on the host is touched."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import polarway
import seed_snippets as seed
from certs import make_certs
from conftest import Server, bind_mounted

# The user guide's Markdown, to check the snippets against when its path is given.
GUIDE = Path(os.environ["POLARWAY_SEED_GUIDE"]) if os.environ.get("POLARWAY_SEED_GUIDE") else None


def adapt(snippet: str, port: int, host: str = "127.0.0.1") -> str:
    """The only change: where the server is."""
    out = snippet.replace('host="polarway-server.example.com"', f'host="{host}"').replace("port=50052", f"port={port}")
    assert out.count(f"port={port}") == snippet.count("port=50052")
    return out


def run(snippet: str, namespace: dict) -> str:
    """exec the snippet in `namespace`; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "<guide snippet>", "exec"), namespace)
    return out.getvalue()


def test_snippets_are_the_guides():
    if GUIDE is None or not GUIDE.exists():
        pytest.skip("set POLARWAY_SEED_GUIDE to the user guide's Markdown file to compare the snippets with it")
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert blocks == seed.ALL, "the guide's Python snippets changed: update tests/seed_snippets.py and these tests"


@contextlib.contextmanager
def mount_point(path: str):
    """An empty directory to bind-mount over inside a namespace (removed afterwards if we made it)."""
    made = not os.path.exists(path)
    os.makedirs(path, exist_ok=True)
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(path)


@pytest.fixture(scope="module")
def data_server(tmp_path_factory):
    """`polarway server --data-dir /data`, with /data a private bind mount of a temp directory."""
    tmp = tmp_path_factory.mktemp("seed-data")
    with mount_point("/data"):
        s = Server(data_dir="/data", prefix=bind_mounted(str(tmp), "/data"))
        try:
            yield s
        finally:
            s.stop()


# An earlier day of trades, with the `timestamp` column the guide's query filters on (one row
# before the cutoff).
EARLIER_TRADES = pl.DataFrame(
    {
        "symbol": ["BTC", "ETH", "SOL", "BTC"],
        "price": [48000, 2900, 90, 52000],
        "timestamp": pl.Series(
            ["2026-01-31 10:00", "2026-02-02 09:00", "2026-02-02 09:30", "2026-02-02 10:00"]
        ).str.to_datetime(),
    }
)
GUIDE_FRAME = """df = pl.DataFrame({
    "symbol": ["BTC", "ETH", "SOL"],
    "price": [50000, 3000, 100]
})"""
# The one change beyond host and port: the guide's frame gains the `timestamp` its query needs.
FRAME_WITH_TIMESTAMP = """df = pl.DataFrame({
    "symbol": ["BTC", "ETH", "SOL"],
    "price": [50000, 3000, 100],
    "timestamp": pl.Series(["2026-02-03 12:00"] * 3).str.to_datetime(),
})"""


def test_client_usage(data_server):
    with polarway.DistributedClient("127.0.0.1", data_server.port) as c:
        c.store("trades_20260202", EARLIER_TRADES)

    # As written: everything works up to the query, which needs a `timestamp` column that the
    # guide's frame lacks; the error says so.
    ns: dict = {}
    with pytest.raises(polarway.InvalidArgument, match="timestamp"):
        run(adapt(seed.CLIENT_USAGE, data_server.port), ns)
    assert ns["health"] == "OK"
    assert_frame_equal(ns["loaded"], ns["df"])

    # With a timestamp on the stored frame: the query over /data/cold/trades_*.parquet answers.
    snippet = adapt(seed.CLIENT_USAGE, data_server.port)
    assert GUIDE_FRAME in snippet
    ns = {}
    printed = run(snippet.replace(GUIDE_FRAME, FRAME_WITH_TIMESTAMP), ns)
    assert ns["health"] == "OK" and "Server status: OK" in printed
    assert_frame_equal(ns["loaded"], ns["df"])
    result = ns["result"].sort("symbol")
    # BTC: 52000 (Feb 2) and 50000 (Feb 3), its Jan 31 trade filtered out; ETH and SOL: both days.
    assert result.to_dict(as_series=False) == {"symbol": ["BTC", "ETH", "SOL"], "avg_price": [51000.0, 2950.0, 95.0]}
    assert "avg_price" in printed and "SOL" in printed


def test_parallel_loads(data_server):
    frames = {
        n: pl.DataFrame({"symbol": ["BTC", "ETH"], "v": [i, i + 1]})
        for i, n in enumerate(["trades_20260203", "quotes_20260203", "orders_20260203"])
    }
    with polarway.DistributedClient("127.0.0.1", data_server.port) as c:
        c.store_batch(frames)
    ns: dict = {}
    run(adapt(seed.PARALLEL_LOADS, data_server.port), ns)
    assert len(ns["results"]) == 3
    for got, want in zip(ns["results"], frames.values()):
        assert_frame_equal(got, want)


def test_batch_store(data_server):
    ns = {
        "client": polarway.DistributedClient("127.0.0.1", data_server.port),
        "trades_df": pl.DataFrame({"symbol": ["BTC"], "price": [1]}),
        "quotes_df": pl.DataFrame({"symbol": ["ETH"], "bid": [2.5]}),
        "orders_df": pl.DataFrame({"id": [7, 8], "qty": [1, 2]}),
    }
    before = {d.name: d.version for d in ns["client"].list()}
    run(seed.BATCH_STORE, ns)
    c = ns["client"]
    for n, df in (
        ("trades_20260203", ns["trades_df"]),
        ("quotes_20260203", ns["quotes_df"]),
        ("orders_20260203", ns["orders_df"]),
    ):
        assert_frame_equal(c.load(n), df)
        assert c.describe(n).version == before.get(n, 0) + 1
    c.close()


def test_streaming(data_server):
    n = 1_000_000
    huge = pl.DataFrame({"id": pl.int_range(n, eager=True)})
    seen: list = []
    ns = {"client": polarway.DistributedClient("127.0.0.1", data_server.port), "process_batch": seen.append}
    ns["client"].store("huge_dataset", huge)
    run(seed.STREAMING, ns)
    assert len(seen) > 1 and all(isinstance(b, pl.DataFrame) for b in seen)
    assert sum(b.height for b in seen) == n and sum(b["id"].sum() for b in seen) == n * (n - 1) // 2
    ns["client"].close()


def test_tls_client(tmp_path):
    """The guide's server and client TLS snippets with their /certs paths, inside a namespace."""
    certs = tmp_path / "certs"
    make_certs(certs)
    with mount_point("/certs"):
        server = Server(
            ["--tls-cert", "/certs/server.crt", "--tls-key", "/certs/server.key", "--tls-ca", "/certs/ca.crt"],
            prefix=bind_mounted(str(certs), "/certs"),
        )
        try:
            script = (
                "from polarway import DistributedClient\n"
                + adapt(seed.TLS_CLIENT, server.port, host="localhost")
                + "print(client.health_check())\nimport polars as pl\n"
                + "client.store('tls_check', pl.DataFrame({'a': [1, 2]}))\n"
                + "print(client.load('tls_check')['a'].to_list())\n"
            )
            out = subprocess.run(
                [*bind_mounted(str(certs), "/certs"), sys.executable, "-c", script],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            server.stop()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OK", "[1,", "2]"]


def test_token_client(start_server, name):
    server = start_server(env={"POLARWAY_AUTH_TOKEN": "your-secret-token"})  # as the guide sets it
    ns: dict = {"DistributedClient": polarway.DistributedClient}
    run(adapt(seed.TOKEN_CLIENT, server.port), ns)
    client = ns["client"]
    client.store(name, pl.DataFrame({"a": [1]}))
    assert [d.name for d in client.list()] == [name]
    with server.client() as anonymous, pytest.raises(polarway.Unauthenticated):
        anonymous.list()
    client.close()


def test_health_check_and_slow_queries(server):
    ns: dict = {"DistributedClient": polarway.DistributedClient, "client": server.client()}
    assert run(seed.HEALTH_CHECK, ns).strip() == "OK"
    ns["client"].close()
    printed = run(adapt(seed.SLOW_QUERIES, server.port), ns)
    assert re.fullmatch(r"Hit rate: \d+\.\d%\n", printed), printed
    assert ns["client"]._cfg.timeout == 300
    ns["client"].close()
