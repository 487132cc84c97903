"""Standard Flight clients against real servers: pyarrow.flight and the ADBC Flight SQL driver,
on an open worker and through the gateway (TLS, tokens, roles), with no Polarway code on the
client side except to compare with the native API."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import polarway
from conftest import worker

pytestmark = pytest.mark.timeout(120)


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def client(dep, token: str | None = None) -> fl.FlightClient:
    kwargs = {}
    if dep.ca:
        kwargs["tls_root_certs"] = dep.ca.read_bytes()
    return fl.connect(dep.uri, **kwargs)


def options(token: str | None) -> fl.FlightCallOptions:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return fl.FlightCallOptions(headers=headers, timeout=60)


def put(c: fl.FlightClient, name, table: pa.Table, token: str | None = None, path=None) -> dict:
    writer, reader = c.do_put(fl.FlightDescriptor.for_path(*(path or [name])), table.schema, options=options(token))
    writer.write_table(table)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    import json

    return json.loads(meta.to_pybytes())


def get(c: fl.FlightClient, path, token: str | None = None) -> pa.Table:
    info = c.get_flight_info(fl.FlightDescriptor.for_path(*path), options=options(token))
    return c.do_get(info.endpoints[0].ticket, options=options(token)).read_all()


def pack_field(num: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    key, n, length = bytes([num << 3 | 2]), len(payload), b""
    while True:
        length += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return key + length + payload


def sql_descriptor(sql: str) -> fl.FlightDescriptor:
    """A Flight SQL CommandStatementQuery, packed in a protobuf Any by hand (no Polarway code)."""
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return fl.FlightDescriptor.for_command(pack_field(1, url) + pack_field(2, pack_field(1, sql.encode())))


def adbc(dep, token: str | None = None, **db_kwargs):
    kwargs = dict(db_kwargs)
    if token:
        kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    if dep.ca:
        kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = dep.ca.read_text()
    return flight_sql.connect(dep.uri, db_kwargs=kwargs, autocommit=True)


TABLE = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "name": ["a", "b", "c", None],
        "score": [0.5, 1.5, 2.5, 3.5],
    }
)


# --- plain Flight (pyarrow.flight) -------------------------------------------------------------


def test_path_put_get_and_versions(open_worker):
    c, name = client(open_worker), unique()
    assert put(c, name, TABLE)["version"] == 1
    second = TABLE.slice(0, 2)
    assert put(c, name, second)["version"] == 2
    assert get(c, [name]).equals(second)
    assert get(c, [name, "v1"]).equals(TABLE)
    info = c.get_flight_info(fl.FlightDescriptor.for_path(name))
    assert info.schema.equals(TABLE.schema) and info.total_records == 2
    assert c.get_schema(fl.FlightDescriptor.for_path(name, "v1")).schema.equals(TABLE.schema)
    listed = {f.descriptor.path[0].decode(): f for f in c.list_flights()}
    assert listed[name].descriptor.path[1] == b"v2" and listed[name].total_records == 2


def test_path_put_version_condition(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    assert put(c, name, TABLE, path=[name, "v1"])["version"] == 2
    with pytest.raises(pa.ArrowException) as e:  # v1 is no longer the latest
        put(c, name, TABLE, path=[name, "v1"])
    assert "ABORTED" in str(e.value) or "version" in str(e.value).lower()
    assert get(c, [name, "v2"]).equals(TABLE)
    with pytest.raises(pa.ArrowException):
        get(c, [name, "v9"])
    # Messages that carry only app_metadata are let through (and ignored).
    writer, reader = c.do_put(fl.FlightDescriptor.for_path(name), TABLE.schema)
    writer.write_metadata(pa.py_buffer(b"note"))
    writer.write_table(TABLE)
    writer.write_metadata(pa.py_buffer(b"done"))
    writer.done_writing()
    reader.read()
    writer.close()
    assert get(c, [name]).equals(TABLE) and get(c, [name, "v3"]).equals(TABLE)


def test_large_batch_and_stream(open_worker):
    c, name = client(open_worker), unique()
    n = 3_000_000  # one record batch of ~48 MB, far over gRPC's default 4 MiB message limit
    big = pa.table({"a": pa.array(range(n), pa.int64()), "b": pa.array(range(n), pa.float64())})
    writer, reader = c.do_put(fl.FlightDescriptor.for_path(name), big.schema)
    writer.write_batch(big.combine_chunks().to_batches()[0])
    writer.done_writing()
    reader.read()
    writer.close()
    back = get(c, [name])
    assert back.num_rows == n and back.column("a").to_pylist()[-3:] == [n - 3, n - 2, n - 1]
    res = c.do_get(c.get_flight_info(sql_descriptor(f"SELECT sum(a) AS s FROM {name}")).endpoints[0].ticket).read_all()
    assert res.column("s").to_pylist() == [n * (n - 1) // 2]


def test_sigterm_drains_a_do_get_in_flight(tmp_root):
    """SIGTERM while pyarrow.flight reads a DoGet: every row arrives, then the worker exits."""
    w = worker(tmp_root, unique("drain"))
    try:
        c, name, n = fl.connect(f"grpc://{w.addr}"), unique(), 4_000_000
        put(c, name, pa.table({"a": pa.array(range(n), pa.int64()), "b": pa.array(range(n), pa.float64())}))
        reader = c.do_get(c.get_flight_info(fl.FlightDescriptor.for_path(name)).endpoints[0].ticket)
        rows = reader.read_chunk().data.num_rows
        w.proc.send_signal(signal.SIGTERM)
        rows += reader.read_all().num_rows
        assert rows == n
        assert w.proc.wait(timeout=20) == 0
    finally:
        w.stop()


def test_bad_input_is_refused_clearly(open_worker):
    c = client(open_worker)
    for path in (["../etc"], ["a", "b", "c"], ["x", "vNaN"]):
        with pytest.raises(pa.ArrowException) as e:
            c.get_flight_info(fl.FlightDescriptor.for_path(*path))
        assert "invalid" in str(e.value).lower() or "name" in str(e.value).lower()
    with pytest.raises(pa.ArrowException) as e:
        c.do_get(fl.Ticket(b"pw1{}not-a-real-ticket-0123456789abcdef0123456789"))
    assert "ticket" in str(e.value).lower()
    with pytest.raises(pa.ArrowException):
        c.do_get(fl.Ticket(b"garbage"))
    # The worker still serves.
    name = unique()
    put(c, name, TABLE)
    assert get(c, [name]).equals(TABLE)


def test_tampered_ticket_is_refused(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    ticket = c.get_flight_info(sql_descriptor(f"SELECT * FROM {name}")).endpoints[0].ticket.ticket
    # Change a byte of the SQL inside the ticket (the signature no longer matches).
    i = ticket.find(b"SELECT")
    assert i > 0
    forged = ticket[:i] + b"select" + ticket[i + 6 :]
    with pytest.raises(pa.ArrowException) as e:
        c.do_get(fl.Ticket(forged)).read_all()
    assert "altered" in str(e.value) or "not one this service issued" in str(e.value)


def test_cancel_flight_info(open_worker):
    c = client(open_worker)
    info = c.get_flight_info(sql_descriptor("SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3"))
    # pyarrow has no cancel_flight_info: the action's body is a CancelFlightInfoRequest (field 1,
    # the FlightInfo), its result a CancelFlightInfoResult (field 1, the status; 1 = CANCELLED).
    body = pack_field(1, info.serialize())
    results = list(c.do_action(fl.Action("CancelFlightInfo", body)))
    assert [r.body.to_pybytes() for r in results] == [b"\x08\x01"]
    with pytest.raises(pa.ArrowException) as e:
        c.do_get(info.endpoints[0].ticket).read_all()
    assert "cancel" in str(e.value).lower()


READ_IN_ANOTHER_PROCESS = """
import sys, pyarrow.flight as fl
try:
    fl.connect(sys.argv[1]).do_get(fl.Ticket(bytes.fromhex(sys.argv[2]))).read_all()
    print("finished")
except BaseException as e:  # pyarrow turns a CANCELLED status into a simulated Ctrl-C
    print(type(e).__name__, e)
"""


def test_cancel_running_query(open_worker):
    c = client(open_worker)
    info = c.get_flight_info(sql_descriptor("SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3"))
    # The DoGet runs in another process: pyarrow raises KeyboardInterrupt in the main thread of
    # the process whose read was cancelled.
    reader = subprocess.Popen(
        [sys.executable, "-c", READ_IN_ANOTHER_PROCESS, open_worker.uri, info.endpoints[0].ticket.ticket.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert list(c.do_action(fl.Action("CancelFlightInfo", pack_field(1, info.serialize()))))
    try:
        out, _ = reader.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        reader.kill()
        pytest.fail("the query kept running after CancelFlightInfo")
    assert "cancel" in out.lower() and "finished" not in out, out
    # The worker serves on.
    again = c.get_flight_info(sql_descriptor("SELECT 42 AS x")).endpoints[0].ticket
    assert c.do_get(again).read_all().column("x").to_pylist() == [42]


# --- Flight SQL with the ADBC driver -------------------------------------------------------------


def test_adbc_query_equals_native_query(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    sql = f"SELECT id, name, score * 2 AS twice FROM {name} WHERE id > 1 ORDER BY id"
    with adbc(open_worker) as conn, conn.cursor() as cur:
        cur.execute(sql)
        via_flight = cur.fetch_arrow_table()
    host, port = open_worker.host_port.split(":")
    native = polarway.DistributedClient(host, int(port)).query(sql, format="arrow")
    assert via_flight.equals(native)
    assert via_flight.column("twice").to_pylist() == [3.0, 5.0, 7.0]


def test_adbc_prepared_statement_with_parameters(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    with adbc(open_worker) as conn, conn.cursor() as cur:
        sql = f"SELECT id, name FROM {name} WHERE id >= ? ORDER BY id"
        for low, ids in ((1, [1, 2, 3, 4]), (3, [3, 4]), (5, [])):
            cur.execute(sql, parameters=(low,))
            assert cur.fetch_arrow_table().column("id").to_pylist() == ids
        cur.execute(f"SELECT count(*) AS n FROM {name} WHERE name = ?", parameters=("b",))
        assert cur.fetchall() == [(1,)]
        # The parameter is announced with the type of the column it is compared with.
        assert cur.adbc_prepare(sql).types == [pa.int64()]
        assert cur.adbc_prepare(f"SELECT ?::DATE AS d, upper(?) AS u FROM {name}").types == [pa.date32(), pa.string()]
        schema = cur.adbc_execute_schema(sql)
        assert schema.names == ["id", "name"]


def test_adbc_ingest_modes(open_worker):
    name = unique()
    more = pa.table({"id": pa.array([9], pa.int64()), "name": ["z"], "score": [9.5]})
    with adbc(open_worker) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest(name, TABLE, mode="create") == 4
        with pytest.raises(adbc_driver_manager.Error):  # it exists now
            cur.adbc_ingest(name, TABLE, mode="create")
        assert cur.adbc_ingest(name, more, mode="append") == 1
        cur.execute(f"SELECT id FROM {name} ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [1, 2, 3, 4, 9]
        assert cur.adbc_ingest(name, more, mode="replace") == 1
        cur.execute(f"SELECT count(*) FROM {name}")
        assert cur.fetchall() == [(1,)]
        assert cur.adbc_ingest(name, TABLE, mode="create_append") == 4
        cur.execute(f"SELECT count(*) FROM {name}")
        assert cur.fetchall() == [(5,)]
        fresh = unique()
        assert cur.adbc_ingest(fresh, TABLE, mode="create_append") == 4
        with pytest.raises(adbc_driver_manager.Error):  # append needs the same columns
            cur.adbc_ingest(fresh, pa.table({"other": [1]}), mode="append")
        with pytest.raises(adbc_driver_manager.Error):  # append needs the dataset to exist
            cur.adbc_ingest(unique(), TABLE, mode="append")
    # Every ingest is a Polarway version.
    host, port = open_worker.host_port.split(":")
    info = polarway.DistributedClient(host, int(port)).describe(name)
    assert info.version == 4 and info.rows == 5


def test_adbc_metadata(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    with adbc(open_worker) as conn, conn.cursor() as cur:
        objects = conn.adbc_get_objects(table_name_filter=name).read_all().to_pylist()
        tables = [t for cat in objects for s in cat["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert [t["table_name"] for t in tables] == [name]
        assert [col["column_name"] for col in tables[0]["table_columns"]] == ["id", "name", "score"]
        assert conn.adbc_get_table_schema(name).equals(TABLE.schema)
        assert cur.adbc_execute_schema(f"SELECT name, id FROM {name}").names == ["name", "id"]
        assert "TABLE" in conn.adbc_get_table_types()
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Polarway"


def test_adbc_ddl_and_dml_are_refused_at_execute(open_worker):
    c, name = client(open_worker), unique()
    put(c, name, TABLE)
    with adbc(open_worker) as conn, conn.cursor() as cur:
        for stmt in (
            f"CREATE TABLE {unique()} (a INTEGER)",
            f"INSERT INTO {name} VALUES (5, 'e', 1.0)",
            f"DROP TABLE {name}",
            f"SELECT 1; DROP TABLE {name}",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
        ):
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.execute(stmt)
            assert "read-only" in str(e.value) or "one SELECT" in str(e.value), stmt
        cur.execute(f"SELECT count(*) FROM {name}")
        assert cur.fetchall() == [(4,)]


# --- through the gateway: TLS, tokens, roles ---------------------------------------------------


def test_gateway_basic_handshake_gives_bearer_token(gateway):
    c = client(gateway)
    for password in ("alice-token",):
        header = c.authenticate_basic_token("alice", password)
        assert header == (b"authorization", b"Bearer alice-token")
    with pytest.raises(pa.ArrowException):
        c.authenticate_basic_token("alice", "wrong")


def test_gateway_token_and_password(gateway):
    c, name = client(gateway), unique("alice")
    put(c, name, TABLE, token="alice-token")
    sql = f"SELECT sum(id) AS s FROM {name}"
    with adbc(gateway, token="alice-token") as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchall() == [(10,)]
    # User name and password (the token as password): Basic on the handshake, then the bearer
    # token the gateway answers with.
    with adbc(gateway, username="alice", password="alice-token") as conn, conn.cursor() as cur:
        cur.execute(sql)
        assert cur.fetchall() == [(10,)]
    with pytest.raises(adbc_driver_manager.Error) as e:
        with adbc(gateway, username="alice", password="wrong") as conn, conn.cursor() as cur:
            cur.execute(sql)
    assert "UNAUTHENTICATED" in str(e.value) or "token" in str(e.value).lower()


def test_gateway_tenant_isolation(gateway):
    c = client(gateway)
    alice_t, bob_t = unique("alice"), unique("bob")
    put(c, alice_t, TABLE, token="alice-token")
    put(c, bob_t, pa.table({"secret": [424242]}), token="bob-token")
    with adbc(gateway, token="alice-token") as conn, conn.cursor() as cur:
        for sql in (
            f"SELECT * FROM {bob_t}",
            f"SELECT * FROM {alice_t} JOIN {bob_t} ON true",
            f"WITH x AS (SELECT * FROM {bob_t}) SELECT * FROM x",
        ):
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.execute(sql)
            assert "424242" not in str(e.value)
        names = [
            t["table_name"]
            for cat in conn.adbc_get_objects().read_all().to_pylist()
            for s in cat["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        ]
        assert alice_t in names and not any(n.startswith("bob_") for n in names)
        with pytest.raises(adbc_driver_manager.Error):
            conn.adbc_get_table_schema(bob_t)
    # PATH descriptors and writes follow the same roles.
    for call in (
        lambda: get(c, [bob_t], token="alice-token"),
        lambda: put(c, unique("bob"), TABLE, token="alice-token"),
    ):
        with pytest.raises(pa.ArrowException) as e:
            call()
        assert "424242" not in str(e.value)
    assert not [f for f in c.list_flights(options=options("alice-token")) if f.descriptor.path[0].startswith(b"bob_")]
    # Bob's ticket is bob's: alice presenting it is refused.
    bobs = c.get_flight_info(sql_descriptor(f"SELECT * FROM {bob_t}"), options=options("bob-token"))
    assert c.do_get(bobs.endpoints[0].ticket, options=options("bob-token")).read_all().column("secret").to_pylist() == [
        424242
    ]
    with pytest.raises(pa.ArrowException) as e:
        c.do_get(bobs.endpoints[0].ticket, options=options("alice-token")).read_all()
    assert "424242" not in str(e.value)
    with pytest.raises(pa.ArrowException):
        list(c.list_flights(options=options("nobody")))


def test_listing_shows_columns_only_to_who_may_describe(gateway):
    c, name = client(gateway), unique("alice")
    put(c, name, TABLE, token="admin-token")
    # Listed, as by the native List, without columns; and no data.
    with adbc(gateway, token="lister-token") as conn, conn.cursor() as cur:
        tables = [
            t
            for cat in conn.adbc_get_objects(table_name_filter=name).read_all().to_pylist()
            for s in cat["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        ]
        assert [t["table_name"] for t in tables] == [name] and not tables[0]["table_columns"]
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute(f"SELECT * FROM {name}")
    listed = [f for f in c.list_flights(options=options("lister-token")) if f.descriptor.path[0] == name.encode()]
    assert len(listed) == 1 and len(listed[0].schema) == 0
    with pytest.raises(pa.ArrowException):
        get(c, [name], token="lister-token")
    # Who may describe it sees its columns.
    full = [f for f in c.list_flights(options=options("admin-token")) if f.descriptor.path[0] == name.encode()]
    assert full[0].schema.equals(TABLE.schema)


def test_ticket_is_served_by_any_worker_at_its_snapshot(gateway):
    """GetFlightInfo on worker A, a newer Store, DoGet on worker B: B returns A's snapshot."""
    a, b = (fl.connect(f"grpc://{w.addr}") for w in gateway.workers)
    token = "gateway-to-worker"
    name = unique()
    put(a, name, TABLE, token=token)
    info = a.get_flight_info(sql_descriptor(f"SELECT count(*) AS n FROM {name}"), options=options(token))
    path_info = a.get_flight_info(fl.FlightDescriptor.for_path(name), options=options(token))
    put(b, name, TABLE.slice(0, 1), token=token)
    pinned = b.do_get(info.endpoints[0].ticket, options=options(token)).read_all()
    assert pinned.column("n").to_pylist() == [4]
    assert b.do_get(path_info.endpoints[0].ticket, options=options(token)).read_all().equals(TABLE)
    fresh = b.get_flight_info(sql_descriptor(f"SELECT count(*) AS n FROM {name}"), options=options(token))
    assert b.do_get(fresh.endpoints[0].ticket, options=options(token)).read_all().column("n").to_pylist() == [1]
