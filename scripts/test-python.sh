#!/usr/bin/env bash
# The Python client's suite: installs the package (and test tools) into a virtualenv, checks every
# Python file of the repository with ruff (lint and format), then runs pytest against the real
# `polarway` binary on loopback ports.
#   POLARWAY_BIN    server binary (default: $CARGO_TARGET_DIR/release/polarway)
#   POLARWAY_VENV   virtualenv to use/create (default: ~/.cache/polarway/venv)
#   extra arguments go to pytest, e.g. `bash scripts/test-python.sh -k tls`
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
venv="${POLARWAY_VENV:-$HOME/.cache/polarway/venv}"

if [ ! -x "$POLARWAY_BIN" ]; then
  echo "polarway binary not found at $POLARWAY_BIN: build it first (cargo build --release --workspace) or set POLARWAY_BIN" >&2
  exit 1
fi

# unshare (util-linux) runs the guide's /data and /certs paths in private mount namespaces.
ensure_python_venv
ensure_apt unshare util-linux

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating virtualenv $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if run_done python-suite "$venv"; then
  echo "== clients/python[all] and test tools: installed into $venv earlier in this run"
else
  echo "== installing clients/python[all] and test tools into $venv"
  "$py" -m pip install -q --disable-pip-version-check --upgrade pip
  "$py" -m pip install -q --disable-pip-version-check \
    "./clients/python[all]" -r clients/python/requirements-dev.txt
  mark_done python-client "$venv"   # scripts/test-xlang.sh of the same run reuses this install
fi

# Every Python file of the repository (client, tests, tools, tests/flight, loadtest/bench), with the
# settings of clients/python/pyproject.toml ([tool.ruff]; the generated stubs are excluded there).
ruff="$venv/bin/ruff"
cfg=clients/python/pyproject.toml
echo "== ruff check, ruff format --check (all Python files)"
if ! "$ruff" check --config "$cfg" .; then
  echo "ruff check found problems: fix them (most with \`$ruff check --config $cfg --fix .\`)" >&2
  exit 1
fi
if ! "$ruff" format --check --config "$cfg" .; then
  echo "the files above are not ruff-formatted: run \`$ruff format --config $cfg .\`" >&2
  exit 1
fi

echo "== pytest clients/python/tests (server: $POLARWAY_BIN)"
cd clients/python
# -p no:cacheprovider: leave no .pytest_cache in the tree.
exec "$py" -m pytest -p no:cacheprovider -ra --timeout=180 "$@" tests
