"""The Flight reference's client (pyarrow.flight: Arrow's C++ Flight client). Prints JSON.

Usage:
    python flight_client.py get --addr 127.0.0.1:P --runs 3 [--tls-ca CA]
    python flight_client.py put --addr 127.0.0.1:P --runs 3 --parquet table.parquet
"""

import argparse
import json
import time

import pyarrow.flight as flight
import pyarrow.parquet as pq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["get", "put"])
    p.add_argument("--addr", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tls-ca")
    p.add_argument("--parquet")
    a = p.parse_args()
    kwargs = {}
    scheme = "grpc+tcp"
    if a.tls_ca:
        scheme = "grpc+tls"
        with open(a.tls_ca, "rb") as f:
            kwargs["tls_root_certs"] = f.read()
    client = flight.connect(f"{scheme}://{a.addr}", **kwargs)
    seconds, rows, nbytes = [], 0, 0
    if a.mode == "get":
        for i in range(a.warmup + a.runs):
            t0 = time.perf_counter()
            table = client.do_get(flight.Ticket(b"table")).read_all()
            dt = time.perf_counter() - t0
            rows, nbytes = table.num_rows, table.nbytes
            del table
            if i >= a.warmup:
                seconds.append(dt)
    else:
        table = pq.read_table(a.parquet)
        rows, nbytes = table.num_rows, table.nbytes
        for i in range(a.runs):
            t0 = time.perf_counter()
            writer, reader = client.do_put(flight.FlightDescriptor.for_path(f"upload_{i}"), table.schema)
            writer.write_table(table, max_chunksize=65536)
            writer.close()
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": seconds, "rows": rows, "bytes": nbytes}))


if __name__ == "__main__":
    main()
