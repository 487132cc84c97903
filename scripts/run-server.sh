#!/usr/bin/env bash
# Build (release) and run a Polarway worker. With no arguments: 127.0.0.1:50052, data in ./data.
# Extra arguments go to `polarway server`, e.g. --grpc-port 50060 --cache-size 4.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools
# The same build as scripts/test.sh (release, whole workspace, every binary: the worker, the gateway
# and the load tester), so whichever of the two commands runs first builds what the other needs and
# the second one compiles only its own targets (the tests and examples), never the dependencies.
cargo build --release --workspace
exec "$POLARWAY_RELEASE_DIR/polarway" server "$@"
