#!/usr/bin/env bash
# Arrow Flight and Flight SQL with standard clients (pyarrow.flight, the ADBC Flight SQL driver,
# the Flight SQL JDBC driver) against real workers and the gateway on loopback ports.
#   POLARWAY_BIN, POLARWAY_GATEWAY_BIN   binaries (default: $CARGO_TARGET_DIR/release/...)
#   POLARWAY_VENV   virtualenv to use/create (default: ~/.cache/polarway/venv, shared with the
#                   Python client's suite: the tests compare with the native client)
#   extra arguments go to pytest, e.g. `bash scripts/test-flight.sh -k adbc`
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
export POLARWAY_GATEWAY_BIN="${POLARWAY_GATEWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway-gateway}"
venv="${POLARWAY_VENV:-$HOME/.cache/polarway/venv}"
for bin in "$POLARWAY_BIN" "$POLARWAY_GATEWAY_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "$bin not found: build first (cargo build --release --workspace)" >&2
    exit 1
  fi
done

ensure_python_venv
# The JDBC driver's check is a small Maven project (Java 17).
ensure_apt javac openjdk-17-jdk-headless
ensure_apt mvn maven

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! run_done python-suite "$venv"; then
  run_done python-client "$venv" || "$py" -m pip install -q --disable-pip-version-check "./clients/python"
  "$py" -m pip install -q --disable-pip-version-check -r tests/flight/requirements.txt
fi

echo "== pytest tests/flight (worker: $POLARWAY_BIN, gateway: $POLARWAY_GATEWAY_BIN)"
cd tests/flight
exec "$py" -m pytest -p no:cacheprovider -ra --timeout=900 "$@" .
