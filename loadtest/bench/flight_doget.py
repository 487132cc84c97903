"""Polarway's Flight service against Arrow's own (pyarrow.flight, the C++ server), side by side.

One client process (pyarrow.flight) reads the same ~1 GiB table from both servers, interleaved
(the order alternates each round so drift and noise hit both), after a warm-up read from each.
Each read reports wall time, throughput and the CPU-seconds every process spent on it (client,
server), read from /proc. With the `polarway` package importable, Polarway's Python client's
`load(format="arrow")` is measured in the same rounds, over Flight and over polarway.v1. It also
stores the table with DoPut into both (Polarway: a durable dataset version; the reference: zstd
Parquet with fsync).

    python loadtest/bench/flight_doget.py --polarway-bin target/release/polarway [--rows N --cols C --runs R]

Prints a Markdown report (and writes JSON with --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")


# How each measured path reads in the report.
LABELS = {
    "polarway": "pyarrow.flight <- Polarway",
    "reference": "pyarrow.flight <- pyarrow.flight server",
    "python client": "Polarway Python client (Flight) <- Polarway",
    "python client, gRPC": "Polarway Python client (polarway.v1) <- Polarway",
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(cmd: list, prefix: str, log: str) -> tuple:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(f"{prefix}: listening on "):
            return proc, line.rsplit(" ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"{cmd[0]} did not start; see {log}")


def timed(client_pid: int, server_pid: int, fn) -> dict:
    c0, s0, t0 = time.process_time(), cpu_seconds(server_pid), time.perf_counter()
    nbytes = fn()
    wall = time.perf_counter() - t0
    return {
        "seconds": wall,
        "bytes": nbytes,
        "client_cpu": time.process_time() - c0,
        "server_cpu": cpu_seconds(server_pid) - s0,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--polarway-bin", required=True)
    p.add_argument("--rows", type=int, default=8_388_608)
    p.add_argument("--cols", type=int, default=16)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="polarway-flight-bench-")
    rng = np.random.default_rng(7)
    table = pa.table({f"c{i}": rng.random(a.rows) for i in range(a.cols)})
    parquet = os.path.join(work, "table.parquet")
    pq.write_table(table, parquet, compression="zstd", compression_level=1)
    os.makedirs(os.path.join(work, "put"))

    # The worker keeps tables of up to a quarter of its cache decoded in memory, as the reference does.
    worker, waddr = start(
        [
            a.polarway_bin,
            "server",
            "--grpc-port",
            "0",
            "--metrics-enabled",
            "false",
            "--data-dir",
            os.path.join(work, "data"),
            "--cache-size",
            "6",
        ],
        "polarway",
        os.path.join(work, "worker.log"),
    )
    ref, raddr = start(
        [
            sys.executable,
            os.path.join(HERE, "flight_server.py"),
            "--parquet",
            parquet,
            "--put-dir",
            os.path.join(work, "put"),
        ],
        "flight",
        os.path.join(work, "ref.log"),
    )
    try:
        pw = flight.connect(f"grpc+tcp://{waddr}")
        rf = flight.connect(f"grpc+tcp://{raddr}")
        me = os.getpid()

        def put(client, name):
            def go():
                writer, reader = client.do_put(flight.FlightDescriptor.for_path(name), table.schema)
                writer.write_table(table, max_chunksize=65536)
                writer.done_writing()
                reader.read()
                writer.close()
                return table.nbytes

            return go

        def get_polarway():
            info = pw.get_flight_info(flight.FlightDescriptor.for_path("big"))
            return pw.do_get(info.endpoints[0].ticket).read_all().nbytes

        def get_reference():
            return rf.do_get(flight.Ticket(b"table")).read_all().nbytes

        results = {"polarway": {"get": [], "put": []}, "reference": {"get": [], "put": []}}
        timed(me, worker.pid, put(pw, "big"))  # the dataset the reads serve
        get_polarway(), get_reference()  # warm-up: Polarway's cache, both servers' allocators
        targets = [("polarway", worker.pid, get_polarway, pw), ("reference", ref.pid, get_reference, rf)]
        # What a Python user of Polarway's client sees: load(format="arrow") over Flight (its
        # default when the server offers it) and over polarway.v1 (flight=False).
        clients = []
        try:
            import polarway

            host, port = waddr.rsplit(":", 1)
            for label, use_flight in (("python client", True), ("python client, gRPC", False)):
                pc = polarway.DistributedClient(host, int(port), timeout=600, flight=use_flight)
                pc.load("big", format="arrow")  # warm-up
                results[label] = {"get": []}
                clients.append((label, pc))
        except ImportError:
            print("(the polarway package is not installed: no Python client rows)", file=sys.stderr)
        for i in range(a.runs):
            order = targets if i % 2 == 0 else targets[::-1]
            for name, pid, get, client in order:
                results[name]["get"].append(timed(me, pid, get))
            for label, pc in clients:
                results[label]["get"].append(timed(me, worker.pid, lambda: pc.load("big", format="arrow").nbytes))
            for name, pid, get, client in order:
                results[name]["put"].append(timed(me, pid, put(client, f"up_{i}")))
    finally:
        for proc in (worker, ref):
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", work])

    gib = table.nbytes / 2**30

    def med(name, op, key):
        return statistics.median(r[key] for r in results[name][op])

    lines = [
        f"Table: {a.rows:,} rows x {a.cols} float64 columns ({table.nbytes / 2**30:.2f} GiB in memory); "
        f"{a.runs} interleaved rounds after a warm-up; medians. Client: pyarrow {pa.__version__} pyarrow.flight.",
        "",
        "| operation | client <- server | seconds | GiB/s | client CPU-s/GiB | server CPU-s/GiB |",
        "|---|---|---|---|---|---|",
    ]
    for op, label in (("get", "DoGet (warm)"), ("put", "DoPut (durable)")):
        for name in [n for n in results if results[n].get(op)]:
            s = med(name, op, "seconds")
            cpu = f"{med(name, op, 'client_cpu') / gib:.2f} | {med(name, op, 'server_cpu') / gib:.2f}"
            lines.append(f"| {label} | {LABELS.get(name, name)} | {s:.3f} | {gib / s:.2f} | {cpu} |")
    for name, op in [(n, op) for n in results if n != "reference" for op in ("get", "put") if results[n].get(op)]:
        ratio = med("reference", op, "seconds") / med(name, op, "seconds")
        rounds = ", ".join(
            f"{r['seconds'] / p['seconds']:.2f}" for p, r in zip(results[name][op], results["reference"][op])
        )
        lines.append(
            f"\n{op}, {LABELS.get(name, name)}: throughput / reference throughput = **{ratio:.2f}x** "
            f"(per round: {rounds})"
        )
    print("\n".join(lines))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": a.rows, "cols": a.cols, "bytes": table.nbytes, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
