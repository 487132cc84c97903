"""load_stream holds one record batch at a time: streaming 5 million rows grows the client's RSS by
a small fraction of the dataset's size."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import psutil

ROWS = 5_000_000


def test_load_stream_5m_rows_with_bounded_memory(server, name, capsys):
    # Store from another process, so this one never holds the dataset (freed memory that the
    # allocator keeps would hide growth from the stream itself).
    script = textwrap.dedent(f"""
        import polars as pl, polarway
        ids = pl.int_range({ROWS}, eager=True)
        df = pl.DataFrame({{"id": ids, "price": ids.cast(pl.Float64) * 0.5,
                           "symbol": pl.format("SYM-{{}}", ids % 997)}})
        with polarway.DistributedClient("127.0.0.1", {server.port}, timeout=300) as c:
            print(c.store("{name}", df).rows)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == str(ROWS), out.stderr

    proc = psutil.Process(os.getpid())
    gc.collect()
    base = proc.memory_info().rss
    peak, rows, frames, arrow_bytes, id_sum, largest = base, 0, 0, 0, 0, 0
    with server.client(timeout=300) as c:
        for frame in c.load_stream(name):
            rows += frame.height
            frames += 1
            size = frame.estimated_size()
            arrow_bytes += size
            largest = max(largest, size)
            id_sum += frame["id"].sum()
            peak = max(peak, proc.memory_info().rss)
            del frame
    growth = peak - base
    with capsys.disabled():
        print(f"\n[memory] load_stream of {rows:,} rows in {frames} frames: dataset {arrow_bytes / 2**20:.0f} MiB "
              f"in memory, largest frame {largest / 2**20:.1f} MiB, client RSS growth {growth / 2**20:.1f} MiB")
    assert rows == ROWS and id_sum == ROWS * (ROWS - 1) // 2
    assert frames > 1
    assert arrow_bytes > 150 * 2**20
    # Holding the dataset would grow RSS by at least its size; streaming stays far below.
    assert growth < arrow_bytes / 4, f"RSS grew {growth / 2**20:.0f} MiB for a {arrow_bytes / 2**20:.0f} MiB dataset"
