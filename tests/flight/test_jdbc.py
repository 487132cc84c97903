"""The Apache Arrow Flight SQL JDBC driver against real servers: queries, catalog metadata and prepared
statements over plaintext, and over the gateway's TLS with tokens and Basic auth. The checks themselves
run in Java (jdbc/), one `ok`/`FAIL` line each; these tests give them data and read the verdict."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa
import pyarrow.flight as flight
import pytest

PROJECT = Path(__file__).resolve().parent / "jdbc"
BUILD_TIMEOUT = 600  # the first build downloads the driver and Maven's plugins
RUN_TIMEOUT = 120

# The stored rows: a repeated name (a prepared lookup must return both), a null, a value past 32 bits and a
# non-ASCII string, so that every column's conversion is exercised.
ROWS = [
    (1, 10_000_000_001, "ann", 0.5),
    (2, -3, "bob", -1.25),
    (3, 3_000_000_000, None, 2.0),
    (4, 0, "ann", 1e10),
    (5, 7, "zoë", 0.0),
]


def table(rows=ROWS) -> pa.Table:
    ids, bigs, names, scores = zip(*rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int32()),
            "big": pa.array(bigs, pa.int64()),
            "name": pa.array(names, pa.string()),
            "score": pa.array(scores, pa.float64()),
        }
    )


def row_args(rows=ROWS) -> list:
    return [
        "row=" + "|".join(r"\N" if v is None else repr(v) if isinstance(v, float) else str(v) for v in r) for r in rows
    ]


@pytest.fixture(scope="session")
def jdbc_cmd() -> list:
    """`java ... FlightJdbcCheck`, built once per session."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        pytest.fail("the JDBC tests need a JDK 17+ and Maven on PATH (apt-get install openjdk-17-jdk-headless maven)")
    build = subprocess.run(
        [mvn, "-B", "-q", "package"], cwd=PROJECT, capture_output=True, text=True, timeout=BUILD_TIMEOUT
    )
    assert build.returncode == 0, f"mvn package failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    classpath = (PROJECT / "target/classpath.txt").read_text().strip()
    jar = PROJECT / "target/flight-jdbc-check-1.jar"
    # Arrow's memory allocator reads java.nio internals, which Java 17 only opens on request.
    return [java, "--add-opens=java.base/java.nio=ALL-UNNAMED", "-cp", f"{jar}:{classpath}", "polarway.FlightJdbcCheck"]


def run_checks(cmd: Sequence[str], url: str, args: Sequence[str]) -> subprocess.CompletedProcess:
    # Java decodes its arguments and encodes its output in the locale's charset: under C or POSIX a
    # non-ASCII expected value would arrive as '?'.
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [*cmd, url, *args], capture_output=True, text=True, encoding="utf-8", env=env, timeout=RUN_TIMEOUT
    )


# connect, executeQuery, resultSetMetaData, getCatalogs, getSchemas, getTables, getColumns, getTypeInfo and
# three prepared statements
BASE_CHECKS = 11


def assert_all_ok(res: subprocess.CompletedProcess, expected_checks: int) -> None:
    report = f"exit {res.returncode}\n{res.stdout}\nstderr:\n{res.stderr[-4000:]}"
    assert res.returncode == 0, report
    oks = [line for line in res.stdout.splitlines() if line.startswith("ok   ")]
    assert len(oks) == expected_checks, report
    assert "all checks passed" in res.stdout, report


def put(uri: str, name: str, data: pa.Table, token: Optional[str] = None, ca: Optional[Path] = None) -> None:
    kwargs = {"tls_root_certs": ca.read_bytes()} if ca else {}
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {token}".encode())] if token else [], timeout=30
    )
    with flight.connect(uri, **kwargs) as client:
        writer, reader = client.do_put(flight.FlightDescriptor.for_path(name), data.schema, options=options)
        writer.write_table(data)
        writer.done_writing()
        reader.read()
        writer.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --- plaintext, one worker without authentication ---


def test_plaintext_checks(open_worker, jdbc_cmd):
    name = unique("jdbc")
    put(open_worker.uri, name, table())
    url = f"jdbc:arrow-flight-sql://{open_worker.host_port}/?useEncryption=false"
    assert_all_ok(run_checks(jdbc_cmd, url, [f"table={name}", *row_args()]), BASE_CHECKS)


def test_checks_can_fail(open_worker, jdbc_cmd):
    """The checks compare values: a row that differs from what is stored fails them, and says how."""
    name = unique("jdbc")
    put(open_worker.uri, name, table())
    wrong = [*ROWS[:-1], (5, 7, "zoe", 0.0)]
    url = f"jdbc:arrow-flight-sql://{open_worker.host_port}/?useEncryption=false"
    res = run_checks(jdbc_cmd, url, [f"table={name}", *row_args(wrong)])
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL executeQuery: expected rows" in res.stdout and "zoë" in res.stdout, res.stdout


# --- the gateway: TLS trusted through the test CA, identities from the policy ---


def gateway_url(gw, auth: str, trust: bool = True) -> str:
    tls = f"useEncryption=true&tlsRootCerts={gw.ca}" if trust else "useEncryption=true"
    return f"jdbc:arrow-flight-sql://{gw.host_port}/?{tls}&{auth}"


def line(res: subprocess.CompletedProcess, check: str) -> str:
    found = [ln for ln in res.stdout.splitlines() if ln.split(":", 1)[0].split(None, 1)[-1] == check]
    assert len(found) == 1, f"no single line for {check!r}:\n{res.stdout}\n{res.stderr[-4000:]}"
    return found[0]


class TestGateway:
    """Flight SQL through `polarway-gateway`: TLS, tokens and the policy in front of two workers."""

    def test_token_checks(self, gateway, jdbc_cmd):
        name = unique("jdbc")
        put(gateway.uri, name, table(), token="admin-token", ca=gateway.ca)
        res = run_checks(jdbc_cmd, gateway_url(gateway, "token=admin-token"), [f"table={name}", *row_args()])
        assert_all_ok(res, BASE_CHECKS)

    def test_basic_auth_checks(self, gateway, jdbc_cmd):
        """Basic auth with the token as the password; the handshake answers with a bearer token the driver reuses."""
        name = unique("jdbc")
        put(gateway.uri, name, table(), token="admin-token", ca=gateway.ca)
        res = run_checks(
            jdbc_cmd, gateway_url(gateway, "user=anything&password=admin-token"), [f"table={name}", *row_args()]
        )
        assert_all_ok(res, BASE_CHECKS)

    def test_alice_cannot_see_bob(self, gateway, jdbc_cmd):
        mine, theirs = unique("alice"), unique("bob")
        put(gateway.uri, mine, table(), token="alice-token", ca=gateway.ca)
        put(gateway.uri, theirs, table(), token="bob-token", ca=gateway.ca)
        res = run_checks(
            jdbc_cmd, gateway_url(gateway, "token=alice-token"), [f"table={mine}", *row_args(), f"denied={theirs}"]
        )
        assert_all_ok(res, BASE_CHECKS + 2)
        # Flight's Java client names gRPC's PERMISSION_DENIED "UNAUTHORIZED".
        assert "[UNAUTHORIZED]" in line(res, f"denied query {theirs}"), res.stdout

    @pytest.mark.parametrize("auth", ["token=wrong-token", "user=anything&password=wrong-token"])
    def test_wrong_credentials_are_refused(self, gateway, jdbc_cmd, auth):
        res = run_checks(jdbc_cmd, gateway_url(gateway, auth), [f"table={unique('jdbc')}", *row_args()])
        assert res.returncode == 1, res.stdout + res.stderr
        assert "[UNAUTHENTICATED]" in line(res, "connect"), res.stdout

    def test_certificate_is_verified(self, gateway, jdbc_cmd):
        """Without the test CA the driver (trusting only the system's CAs) must refuse the gateway's certificate."""
        res = run_checks(
            jdbc_cmd, gateway_url(gateway, "token=admin-token", trust=False), [f"table={unique('jdbc')}", *row_args()]
        )
        assert res.returncode == 1, res.stdout + res.stderr
        assert "SSLHandshakeException" in line(res, "connect"), res.stdout
