#!/usr/bin/env bash
# Install what the suites after the Rust one need, without the server binary: the Python
# virtualenv (client, test tools, Flight clients), node_modules and the TypeScript build, Go
# modules and the protoc plugins, the JDBC check's Maven dependencies. scripts/test.sh runs this in
# the background while cargo compiles (these installs wait on the network and disk, the build on
# the CPU), so a fresh machine does not wait for them after the build; the suites then find them
# done. Debian packages are installed by the caller first (apt holds one lock).
# Safe to run on its own: every step is the one its suite would run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export PATH="/usr/local/go/bin:$PATH"

step() { echo "== prepare: $*"; }

venv="${POLARWAY_VENV:-$HOME/.cache/polarway/venv}"
step "Python virtualenv $venv: clients/python[all], test tools, Flight clients"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check --upgrade pip
"$py" -m pip install -q --disable-pip-version-check \
  "./clients/python[all]" -r clients/python/requirements-dev.txt -r tests/flight/requirements.txt
mark_done python-client "$venv"
mark_done python-suite "$venv"

step "TypeScript: npm ci and build"
typescript_build

step "Go: modules, the protoc plugins of clients/go/gen.sh, grpcurl"
ensure_go_protoc_plugins
ensure_grpcurl
(cd clients/go && go mod download)
(cd scripts/validate-ops && go mod download)

step "Maven: the JDBC check's dependencies (tests/flight/jdbc)"
(cd tests/flight/jdbc && mvn -B -q package)
step "done"
