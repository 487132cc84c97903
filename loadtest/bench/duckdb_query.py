"""The query reference: the same SQL in local DuckDB (Python) over the same Parquet. Prints JSON.

Usage:
    python duckdb_query.py --parquet FILE --sql "SELECT ... FROM {table} ..." --runs 5
"""

import argparse
import json
import time

import duckdb


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--parquet", required=True)
    p.add_argument("--sql", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    sql = a.sql.replace("{table}", f"read_parquet('{a.parquet}')")
    con = duckdb.connect()
    seconds, rows = [], 0
    for i in range(a.warmup + a.runs):
        t0 = time.perf_counter()
        # Fetched as Arrow, as Polarway's client receives it.
        rows = con.sql(sql).to_arrow_table().num_rows
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            seconds.append(dt)
    print(json.dumps({"seconds": seconds, "rows": rows, "duckdb": duckdb.__version__}))


if __name__ == "__main__":
    main()
