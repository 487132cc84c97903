"""Real servers for the suite: the `polarway` binary started on free loopback ports."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

import polarway

REPO = Path(__file__).resolve().parents[3]
# $POLARWAY_BIN, else the release build that scripts/run-server.sh and scripts/test.sh share
# (`cargo build --release --workspace`).
BIN = os.environ.get(
    "POLARWAY_BIN",
    str(Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/polarway/target")) / "release/polarway"),
)
START_TIMEOUT = 60.0  # seconds for the "listening" line (the server starts in well under that)


class Server:
    """One `polarway server` process. `args` are extra flags; `prefix` wraps the command (unshare)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        port: int = 0,
        data_dir: Optional[str] = None,
        env: Optional[dict] = None,
        prefix: Optional[Sequence[str]] = None,
        wait: bool = True,
    ) -> None:
        if not os.path.exists(BIN):
            pytest.fail(f"polarway binary not found at {BIN} (cargo build --release --workspace, or set POLARWAY_BIN)")
        self.tmp = tempfile.mkdtemp(prefix="polarway-py-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        cmd = [BIN, "server", "--grpc-port", str(port), "--data-dir", self.data_dir, *args]
        if prefix:
            cmd = [*prefix, *cmd]
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self._stderr = open(self.stderr_path, "wb")
        full_env = {**os.environ, "RUST_LOG": "warn", **(env or {})}
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = port
        if wait:
            self.wait_ready()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put(None)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line and line.startswith("polarway: listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                return self.port
            if line is None or left <= 0:
                self.stop()
                raise RuntimeError(f"server did not start (exit {self.proc.poll()}): {self.stderr()}")

    def stderr(self) -> str:
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, **kw) -> polarway.DistributedClient:
        return polarway.DistributedClient("127.0.0.1", self.port, **kw)

    def aclient(self, **kw) -> polarway.AsyncDistributedClient:
        return polarway.AsyncDistributedClient("127.0.0.1", self.port, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The suite's shared server (tests use unique dataset names)."""
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[polarway.DistributedClient]:
    with server.client() as c:
        yield c


@pytest.fixture
def start_server() -> Iterator:
    """Start extra servers for one test; all are stopped afterwards."""
    started: list[Server] = []

    def start(*args: str, **kw) -> Server:
        s = Server(args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def name() -> str:
    """A dataset name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


def bind_mounted(source: str, target: str) -> list[str]:
    """A command prefix that runs the command in a private mount namespace where `source` is
    mounted at `target` (so the guide's absolute paths like /data work without touching the host;
    `target` must exist as an empty directory)."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$1" "$2" && shift 2 && exec "$@"',
        "sh",
        source,
        target,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
