"""Idempotent calls retry with backoff while the server is UNAVAILABLE; stores do not."""

from __future__ import annotations

import asyncio
import threading
import time

import polars as pl
import pytest

import polarway
from conftest import free_port
from test_roundtrip import Recorder

# Enough retries to outlast a debug build's start-up by far (~25 s of backoff in all).
PATIENT = dict(retries=30, backoff=0.1, max_backoff=1.0)


def in_thread(fn):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # surfaced by the assertion below
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_retry_succeeds_when_the_server_comes_up_late(start_server, name, tmp_path):
    port = free_port()
    rec = Recorder()
    with polarway.DistributedClient("127.0.0.1", port, interceptors=[rec], **PATIENT) as c:
        t, out = in_thread(c.health_check)
        time.sleep(1.0)
        start_server(port=port, data_dir=str(tmp_path / "data"))
        t.join(timeout=60)
        assert out.get("value") == "OK", out
        assert sum(1 for m, _ in rec.calls if m == "Health") >= 2  # it did fail and retry
        assert c.store(name, pl.DataFrame({"a": [1]})).version == 1


def test_load_retries_across_a_restart(start_server, name, tmp_path):
    port = free_port()
    data = str(tmp_path / "data")
    first = start_server(port=port, data_dir=data)
    df = pl.DataFrame({"symbol": ["BTC", "ETH"], "price": [1, 2]})
    with polarway.DistributedClient("127.0.0.1", port, **PATIENT) as c:
        c.store(name, df)
        first.stop()
        t, out = in_thread(lambda: c.load(name))
        time.sleep(1.0)
        start_server(port=port, data_dir=data)
        t.join(timeout=60)
        assert "error" not in out, out
        assert out["value"].equals(df)


async def test_async_retry_succeeds_when_the_server_comes_up_late(start_server, tmp_path):
    port = free_port()
    async with polarway.AsyncDistributedClient("127.0.0.1", port, **PATIENT) as c:
        task = asyncio.ensure_future(c.list())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(start_server, port=port, data_dir=str(tmp_path / "data"))
        assert await asyncio.wait_for(task, 60) == []


def test_store_is_not_retried(name):
    rec = Recorder()
    with polarway.DistributedClient("127.0.0.1", free_port(), interceptors=[rec], **PATIENT) as c:
        with pytest.raises(polarway.Unavailable):
            c.store(name, pl.DataFrame({"a": [1]}))
        with pytest.raises(polarway.Unavailable):
            c.delete(name)
        with pytest.raises(polarway.Unavailable):
            c.query("SELECT 1", into=name)
    assert [m for m, _ in rec.calls] == ["Store", "Delete", "Query"]
