#!/usr/bin/env bash
# Run every test suite against real binaries on loopback. Installs what it needs first.
# Each suite runs even when an earlier one failed; the exit status is non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools
ensure_apt nginx nginx-light      # the multi-worker tests put real nginx (grpc_pass) in front
ensure_apt unshare util-linux     # the user guide's /data paths, in private mount namespaces
ensure_moto                       # a real S3-compatible server for the s3 store's tests

failed=()
suite() {  # suite NAME COMMAND...
  local name="$1"; shift
  echo
  echo "== $name"
  if "$@"; then echo "== $name: ok"; else echo "== $name: FAILED"; failed+=("$name"); fi
}

suite "Rust: unit and integration tests (real binaries, real clients, S3 and nginx on loopback)" \
  cargo test --workspace --no-fail-fast
export POLARWAY_BIN="$CARGO_TARGET_DIR/debug/polarway"
suite "Smoke: grpcurl, reflection, grpc.health.v1" bash scripts/smoke.sh
suite "Python client" bash scripts/test-python.sh
suite "Go client" bash scripts/test-go.sh
suite "TypeScript client" bash scripts/test-typescript.sh
[ -f scripts/test-xlang.sh ] && suite "Cross-language: Go, TypeScript, Python, Rust on one server" bash scripts/test-xlang.sh
suite "Operations: Dockerfile, compose, Envoy, Kubernetes, Prometheus, Grafana validated; /metrics live" bash scripts/test-ops.sh
suite "Load-testing harness: a spawned cluster, TLS, open loop, fault mode" bash scripts/test-loadtest.sh

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED suites: %s\n' "${failed[*]}"
  exit 1
fi
echo "all suites passed"
