"""The Arrow Flight reference for the benchmarks (pyarrow.flight, i.e. Arrow's C++ Flight server).

DoGet serves one table held in memory (read once from a Parquet file: the same data Polarway
serves); DoPut reads an upload and writes it durably as zstd Parquet (level 1, as Polarway does),
fsync included. Prints `flight: listening on PORT` once ready.

    python flight_server.py --parquet table.parquet --put-dir DIR [--tls-cert C --tls-key K]
"""

import argparse
import os
import sys

import pyarrow.flight as flight
import pyarrow.parquet as pq


class Server(flight.FlightServerBase):
    def __init__(self, location, table, put_dir, **kwargs):
        super().__init__(location, **kwargs)
        self.table = table
        self.put_dir = put_dir

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(self.table)

    def do_put(self, context, descriptor, reader, writer):
        table = reader.read_all()
        name = descriptor.path[0].decode() if descriptor.path else "upload"
        path = os.path.join(self.put_dir, name + ".parquet")
        tmp = path + ".tmp"
        pq.write_table(table, tmp, compression="zstd", compression_level=1)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--parquet", required=True)
    p.add_argument("--put-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    table = pq.read_table(a.parquet)
    kwargs = {}
    scheme = "grpc+tcp"
    if a.tls_cert:
        scheme = "grpc+tls"
        with open(a.tls_cert, "rb") as c, open(a.tls_key, "rb") as k:
            kwargs["tls_certificates"] = [(c.read(), k.read())]
    server = Server(f"{scheme}://127.0.0.1:{a.port}", table, a.put_dir, **kwargs)
    print(f"flight: listening on 127.0.0.1:{server.port}", flush=True)
    print(f"flight: serving {table.num_rows} rows, {table.nbytes} bytes", file=sys.stderr, flush=True)
    server.serve()


if __name__ == "__main__":
    main()
