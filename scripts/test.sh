#!/usr/bin/env bash
# Run every test suite against real binaries on loopback. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools

echo "== Rust: unit and integration tests (real polarway binary, real client, loopback gRPC)"
cargo test --workspace --no-fail-fast

echo "== Smoke: the binary with standard tools (grpcurl, reflection, grpc.health.v1)"
bash scripts/smoke.sh
