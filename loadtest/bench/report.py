"""Write docs/benchmarks.md from the figures run.sh collected (medians of the runs, ratios against
the reference measured in the same run). loadtest/bench/notes.md (analysis, profiles) is appended.

    python report.py --figures figures.tsv --machine machine.tsv --commands commands.md --out docs/benchmarks.md
"""

import argparse
import os
import statistics
from collections import defaultdict

GIB = 1024**3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--figures", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--commands", required=True)
    p.add_argument("--errors", help="failed small calls, one line each (section 4)")
    p.add_argument("--flight", help="flight_doget.py's Markdown report (section 7)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    values = defaultdict(list)
    for line in open(a.figures):
        comp, variant, metric, value = line.rstrip("\n").split("\t")
        values[(comp, variant, metric)].append(float(value))
    machine = dict(line.rstrip("\n").split("\t", 1) for line in open(a.machine))

    def med(comp, variant, metric):
        v = values.get((comp, variant, metric))
        return statistics.median(v) if v else float("nan")

    def n(comp, variant, metric):
        return len(values.get((comp, variant, metric), []))

    def gibs(comp, variant, bytes_variant=None):
        return med(comp, bytes_variant or variant, "bytes") / med(comp, variant, "seconds") / GIB

    def verdict(ok, yes, no):
        return f"**{yes}**" if ok else f"**{no}**"

    big_rows, big_cols = int(machine["big_rows"]), int(machine["big_cols"])
    big_gib = big_rows * big_cols * 8 / GIB
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(
        "Written by `bash loadtest/bench/run.sh" + (" --quick" if machine["mode"] == "quick" else "") + "` "
        "(release builds; every reference measured in the same run, on the same data, on this machine). "
        f"Each figure is the median of {machine['runs']} runs unless said otherwise; ratios are Polarway ÷ reference."
    )
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k in ["nproc", "cpu", "memory", "kernel", "date", "mode", "rustc", "pyarrow", "duckdb", "nginx"]:
        w(f"| {k} | {machine.get(k, '')} |")
    load = f"{machine.get('load_start', '?')}; {machine.get('load_end', '?')}"
    w(f"| load average (1/5/15 min) at start, at end | {load} |")
    w("")
    w("Everything (clients, servers, proxies) shares these cores over loopback, so absolute figures are")
    w("lower than on separate machines; the ratios are the point.")
    w("")

    # 1. load
    w(f"## 1. Load of a {big_gib:.2f} GiB numeric table over one stream (warm cache)")
    w("")
    w(
        f"Data: {big_rows:,} rows × {big_cols} columns (Int64 key, then Float64/Int64 random values), "
        "stored in Polarway with `Store`; the pyarrow.flight server (`loadtest/bench/flight_server.py`) holds the "
        "same table in memory, read from the worker's own Parquet copy. Polarway's client: `polarway-loadtest` "
        "(Rust, tonic, every batch decoded and kept); Flight's: pyarrow.flight `do_get(...).read_all()` (C++)."
    )
    w("")
    misses = sum(
        values.get(("load", "polarway-plain", "cache_misses"), [])
        + values.get(("load", "polarway-tls", "cache_misses"), [])
    )
    w(
        f"Warm: the worker's CacheStats counted {misses:.0f} misses during the measured Polarway loads "
        "(`--cache-size 6`: a table is admitted up to a quarter of the cache)."
    )
    w("")
    w("| transport | Polarway s | Polarway GiB/s | Flight s | Flight GiB/s | ratio (throughput) | aim: faster |")
    w("|---|---|---|---|---|---|---|")
    for t in ["plain", "tls"]:
        ps, fs = med("load", f"polarway-{t}", "seconds"), med("load", f"flight-{t}", "seconds")
        pg = gibs("load", f"polarway-{t}", "polarway-plain")
        fg = gibs("load", f"flight-{t}", "flight-plain")
        r = pg / fg
        w(
            f"| {'plaintext' if t == 'plain' else 'TLS'} | {ps:.3f} | {pg:.2f} | {fs:.3f} | {fg:.2f} | {r:.2f} | "
            f"{verdict(r >= 1.0, 'yes', 'no: slower')} |"
        )
    w("")

    # 2. store
    ps, fs = med("store", "polarway", "seconds"), med("store", "flight", "seconds")
    sb = med("store", "polarway", "bytes")
    w("## 2. Store of the same table, durably")
    w("")
    w(
        "Polarway `Store` (one stream of 1 MiB chunks; the worker decodes, writes zstd-1 Parquet, fsyncs and commits "
        "the version) vs the Flight server's `DoPut` (`read_all`, then `pyarrow.parquet.write_table(..., "
        "compression='zstd', compression_level=1)` and fsync)."
    )
    w("")
    w("| | seconds | GiB/s |")
    w("|---|---|---|")
    w(f"| Polarway | {ps:.3f} | {sb / ps / GIB:.2f} |")
    w(f"| pyarrow.flight DoPut → zstd Parquet | {fs:.3f} | {sb / fs / GIB:.2f} |")
    w(f"| ratio (throughput) | {fs / ps:.2f} | {verdict(fs / ps >= 1.0, 'Polarway faster', 'Polarway slower')} |")
    w("")

    # 3. query
    q_rows = int(machine["q_rows"])
    ps, ds = med("query", "polarway", "seconds"), med("query", "duckdb", "seconds")
    w(f"## 3. Query: group-by over a {q_rows:,}-row stored dataset")
    w("")
    w(
        "`SELECT k, COUNT(*) AS n, SUM(c1) AS s1, AVG(c2) AS a2, MAX(c3) AS m3 FROM <t> GROUP BY k` (1,000 groups): "
        "Polarway `Query` by table name (result streamed back and decoded) vs local DuckDB in Python over the "
        "same Parquet file (`read_parquet`, result fetched as Arrow). Median of "
        f"{n('query', 'duckdb', 'seconds') and int(machine['runs']) + 2} calls each after one warm-up."
    )
    w("")
    w("| | seconds |")
    w("|---|---|")
    w(f"| Polarway | {ps:.3f} |")
    w(f"| DuckDB (Python, local) | {ds:.3f} |")
    w(f"| ratio (time) | {ps / ds:.2f} — aim within 15%: {verdict(ps / ds <= 1.15, 'yes', 'no')} |")
    w("")

    # 3b. a query's fixed cost
    if n("tinyq", "polarway", "p50"):
        p50, p99 = med("tinyq", "polarway", "p50"), med("tinyq", "polarway", "p99")
        w("### A query's fixed cost")
        w("")
        w(
            "`SELECT c1 FROM <t> LIMIT 1` over a 10-row stored dataset, one caller, back to back, straight to the "
            "worker, after 50 warm-up queries: the client's full round trip (the gate, pinning, a pooled sandbox, "
            "DuckDB, the streamed result)."
        )
        w("")
        w("| p50 ms | p99 ms | aim: p50 ≤ 2 ms |")
        w("|---|---|---|")
        w(f"| {p50:.3f} | {p99:.3f} | {verdict(p50 <= 2.0, 'yes', 'no')} |")
        w("")

    # 4. gateway
    w("## 4. Gateway vs nginx `grpc_pass`, and vs direct")
    w("")
    w(
        "Three workers (shared state directory). Small calls: `Describe` of 12 tiny datasets, closed loop, 32 "
        "callers on 4 HTTP/2 connections. nginx *guide*: the user guide's config plus `client_max_body_size 0` "
        "(no upstream keepalive, one nginx worker process); nginx *tuned*: `keepalive 64` upstream, "
        "`keepalive_requests 10000000` (client and upstream side) and `worker_processes auto`."
    )
    w("")
    w("| path | calls/s | p50 ms | p99 ms | errors |")
    w("|---|---|---|---|---|")
    for v in ["gateway", "nginx-guide", "nginx-tuned", "direct"]:
        w(
            f"| {v} | {med('gateway', v, 'calls_per_s'):.0f} | {med('gateway', v, 'p50'):.3f} | "
            f"{med('gateway', v, 'p99'):.3f} | {med('gateway', v, 'errors'):.0f} |"
        )
    w("")
    for ref in ["nginx-guide", "nginx-tuned"]:
        rt = med("gateway", "gateway", "calls_per_s") / med("gateway", ref, "calls_per_s")
        rp = med("gateway", "gateway", "p99") / med("gateway", ref, "p99")
        w(
            f"- gateway ÷ {ref}: throughput {rt:.2f} ({verdict(rt >= 1.0, 'at least nginx', 'below nginx')}), "
            f"p99 {rp:.2f} ({verdict(rp <= 1.0, 'no worse', 'worse')})"
        )
    errors = open(a.errors).read().strip() if a.errors and os.path.exists(a.errors) else ""
    if errors:
        w("")
        w("Failed calls during these runs:")
        w("")
        w(errors)
    w("")
    gb = med("gateway-large", "gateway", "bytes")
    gg = gb / med("gateway-large", "gateway", "seconds") / GIB
    dg = gb / med("gateway-large", "direct", "seconds") / GIB
    w(
        f"- large load ({gb / GIB:.2f} GiB, warm, one stream): gateway {gg:.2f} GiB/s, direct to the owning worker "
        f"{dg:.2f} GiB/s: {gg / dg:.2f} of direct (aim ≥ 0.90: {verdict(gg / dg >= 0.9, 'yes', 'no')})"
    )
    w("")

    # 5. small loads
    p50, p99, mean = med("small", "direct", "p50"), med("small", "direct", "p99"), med("small", "direct", "mean")
    w("## 5. Warm small-dataset load latency, end to end")
    w("")
    w(
        "1,000 rows × 4 columns, one caller, back to back, straight to a worker, after 50 warm-up loads, for "
        f"{machine.get('small_bound', '')} (whichever comes first): the client's full round trip (request, IPC "
        "chunks, decode)."
    )
    w("")
    w("| p50 ms | p99 ms | mean ms | under 1 ms (the guide's promise) |")
    w("|---|---|---|---|")
    w(
        f"| {p50:.3f} | {p99:.3f} | {mean:.3f} | {verdict(p50 < 1.0, 'yes (p50)', 'no')}"
        f"{', p99 too' if p99 < 1.0 else ''} |"
    )
    w("")

    # 6. routing
    w("## 6. Sticky hashing vs round robin (Zipf keys)")
    w("")
    w(
        "`loadtest/scenarios/zipf-cache.toml`: 60 datasets of 100,000 rows × 3 columns (2.3 MiB each, 137 MiB in "
        "all), Zipf exponent 0.9, 8 callers; three workers with `--cache-size 0.05` (50 MB: one worker cannot hold "
        "them all), spawned by the harness behind the gateway. Hit rate: the workers' CacheStats over the run."
    )
    w("")
    w("| routing | cache hit rate | loads/s | p50 ms | p99 ms |")
    w("|---|---|---|---|---|")
    for v in ["hash", "round-robin"]:
        w(
            f"| {v} | {med('routing', v, 'hit_rate'):.3f} | {med('routing', v, 'calls_per_s'):.0f} | "
            f"{med('routing', v, 'p50'):.3f} | {med('routing', v, 'p99'):.3f} |"
        )
    w("")

    if a.flight and os.path.exists(a.flight):
        w("## 7. Arrow Flight: Polarway's Flight service and Python client vs pyarrow.flight's server")
        w("")
        w(
            "`loadtest/bench/flight_doget.py`: one pyarrow.flight client reads the same table from Polarway's Flight "
            "service and from Arrow's C++ Flight server (the table in memory), interleaved; Polarway's Python client's "
            '`load(format="arrow")` over Flight and over polarway.v1 in the same rounds; DoPut into both (Polarway: a '
            "durable version; the reference: zstd Parquet with fsync)."
        )
        w("")
        w(open(a.flight).read().rstrip("\n"))
        w("")

    if n("streamrss", "polarway", "peak_rss_mib"):
        cache, peak = med("streamrss", "polarway", "cache_mib"), med("streamrss", "polarway", "peak_rss_mib")
        moved = med("streamrss", "polarway", "bytes") / (1 << 20)
        w("## 8. Memory: a streamed load of a table 10x the cache")
        w("")
        w(
            f"A worker with a {cache:.0f} MiB cache stores a table of about {cache * 10:.0f} MiB, is restarted "
            f"(nothing cached), and streams it back twice with `load_stream` ({moved:.0f} MiB received): the "
            "worker's peak RSS (`VmHWM`) over its whole life."
        )
        w("")
        w("| cache MiB | peak RSS MiB | bound: cache + 256 MiB |")
        w("|---|---|---|")
        w(f"| {cache:.0f} | {peak:.0f} | {verdict(peak <= cache + 256, 'held', 'exceeded')} |")
        w("")

    w("## Commands")
    w("")
    w("`$WORK` is the run's temporary directory; URLs are the free ports of that run.")
    w("")
    w("```")
    for line in open(a.commands):
        w(line.rstrip("\n"))
    w("```")
    w("")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        w(open(notes).read().rstrip("\n"))
        w("")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
