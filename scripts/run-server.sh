#!/usr/bin/env bash
# Build (release) and run a Polarway worker. With no arguments: 127.0.0.1:50052, data in ./data.
# Extra arguments go to `polarway server`, e.g. --grpc-port 50060 --cache-size 4.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools
cargo build --release --workspace --bin polarway   # --workspace: the same feature set as every other build, so nothing is rebuilt
exec "$CARGO_TARGET_DIR/release/polarway" server "$@"
