"""Real servers for the Flight suite: `polarway` workers and a `polarway-gateway` on free
loopback ports, started from the release build the other suites use."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/polarway/target")) / "release"
WORKER_BIN = os.environ.get("POLARWAY_BIN", str(RELEASE / "polarway"))
GATEWAY_BIN = os.environ.get("POLARWAY_GATEWAY_BIN", str(RELEASE / "polarway-gateway"))
START_TIMEOUT = 60.0

# The test certificates of the Python client's suite (a CA, a server certificate for 127.0.0.1).
sys.path.insert(0, str(REPO / "clients/python/tests"))
from certs import make_certs  # noqa: E402

GATEWAY_TOKEN = "gateway-to-worker"
POLICY = """
[[identity]]
name = "alice"
token = "alice-token"
roles = ["alice"]

[[identity]]
name = "bob"
token = "bob-token"
roles = ["bob"]

[[identity]]
name = "admin"
token = "admin-token"
roles = ["admin"]

[[identity]]
name = "lister"
token = "lister-token"
roles = ["lister"]

[roles.alice]
methods = ["*"]
datasets = ["alice_*"]

[roles.bob]
methods = ["*"]
datasets = ["bob_*"]

[roles.admin]
methods = ["*"]
datasets = ["*"]

[roles.lister]
methods = ["List"]
datasets = ["*"]
"""


class Proc:
    """A server process; `addr` is what it printed after `listening on`."""

    def __init__(self, cmd: Sequence[str], tmp: str, name: str) -> None:
        self.log_path = os.path.join(tmp, f"{name}.log")
        self._log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLARWAY_")}
        env["RUST_LOG"] = "warn"
        self.proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                lines.put(raw.decode(errors="replace").strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line and ": listening on " in line:
                self.addr = line.rsplit(" ", 1)[1]
                return
            if line is None or left <= 0:
                self.stop()
                raise RuntimeError(f"{cmd[0]} did not start: {Path(self.log_path).read_text(errors='replace')[-3000:]}")

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._log.close()


def worker(tmp: str, name: str, args: Sequence[str] = (), state: Optional[str] = None) -> Proc:
    if not os.path.exists(WORKER_BIN):
        pytest.fail(f"polarway binary not found at {WORKER_BIN} (cargo build --release --workspace)")
    cmd = [
        WORKER_BIN,
        "server",
        "--grpc-port",
        "0",
        "--metrics-enabled",
        "false",
        "--data-dir",
        os.path.join(tmp, name),
    ]
    if state:
        cmd += ["--handle-store", "external", "--state-dir", state]
    return Proc([*cmd, *args], tmp, name)


class Deployment:
    """What a test talks to: `uri` for Flight clients (grpc:// or grpc+tls://)."""

    def __init__(self, uri: str, procs: list, ca: Optional[Path] = None, workers: Optional[list] = None) -> None:
        self.uri, self.procs, self.ca, self.workers = uri, procs, ca, workers or []

    @property
    def host_port(self) -> str:
        return self.uri.split("://", 1)[1]


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="polarway-flight-") as d:
        yield d


@pytest.fixture(scope="session")
def open_worker(tmp_root: str) -> Iterator[Deployment]:
    """One worker without authentication."""
    w = worker(tmp_root, "open")
    yield Deployment(f"grpc://{w.addr}", [w])
    w.stop()


@pytest.fixture(scope="session")
def gateway(tmp_root: str) -> Iterator[Deployment]:
    """Two workers over one shared store behind a gateway with a policy (alice, bob, admin, lister tokens)
    and TLS. The workers take only the gateway's token and enforce the grants it forwards."""
    state = os.path.join(tmp_root, "shared-state")
    certs = make_certs(Path(tmp_root) / "certs")
    policy = Path(tmp_root) / "policy.toml"
    policy.write_text(POLICY)
    workers = [worker(tmp_root, f"gw-worker-{i}", ["--auth-token", GATEWAY_TOKEN], state=state) for i in range(2)]
    backends = [a for w in workers for a in ("--backend", f"http://{w.addr}")]
    gw_cmd = [
        GATEWAY_BIN,
        "--grpc-port",
        "0",
        "--metrics-enabled",
        "false",
        "--policy",
        str(policy),
        "--backend-token",
        GATEWAY_TOKEN,
        "--tls-cert",
        str(certs["server_cert"]),
        "--tls-key",
        str(certs["server_key"]),
        "--health-interval",
        "0.5",
        *backends,
    ]
    gw = Proc(gw_cmd, tmp_root, "gateway")
    yield Deployment(f"grpc+tls://{gw.addr}", [gw, *workers], ca=certs["ca"], workers=workers)
    for p in [gw, *workers]:
        p.stop()
