#!/usr/bin/env bash
# Run every test suite against real binaries on loopback. Installs what it needs first.
# Each suite runs even when an earlier one failed; the exit status is non-zero if any failed.
# One build, the release profile, as scripts/run-server.sh: `cargo test --release --workspace` builds
# the libraries, the worker and gateway binaries, the examples and the tests, and every later suite
# runs the binaries in $CARGO_TARGET_DIR/release (DuckDB's C++ is compiled once for both commands).
# The suites run one after another: they share a 2-core machine, one virtualenv, one
# clients/typescript/node_modules and apt's lock, and several of them measure time. What they
# install (scripts/prepare.sh) is installed in the background while the Rust suite compiles.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# Installs done once per run (the apt package lists, the Python client, npm ci): see lib.sh.
POLARWAY_TEST_RUN_DIR="$(mktemp -d /tmp/polarway-test-run.XXXXXX)"
export POLARWAY_TEST_RUN_DIR
prepare_pid=""
# (`|| true`: under set -e a failing kill of an installer that already ended would set the exit status.)
trap 'if [ -n "$prepare_pid" ]; then kill "$prepare_pid" 2>/dev/null || true; fi; rm -rf "$POLARWAY_TEST_RUN_DIR"' EXIT
ensure_build_tools
ensure_apt nginx nginx-light      # the multi-worker tests put real nginx (grpc_pass) in front
ensure_apt unshare util-linux     # the user guide's /data paths, in private mount namespaces
ensure_moto                       # a real S3-compatible server for the s3 store's tests
# Every Debian package a later suite needs, now: apt holds one lock, and scripts/prepare.sh needs
# python3-venv, npm, Go's C toolchain and Maven.
ensure_python_venv
ensure_apt javac openjdk-17-jdk-headless
ensure_apt mvn maven
ensure_apt node nodejs
ensure_apt npm npm
ensure_apt openssl openssl
ensure_apt gcc gcc
# The other suites' installs, in the background while cargo compiles (network and disk against CPU).
bash scripts/prepare.sh >"$POLARWAY_TEST_RUN_DIR/prepare.log" 2>&1 &
prepare_pid=$!

failed=()
suite() {  # suite NAME COMMAND...
  local name="$1"; shift
  echo
  echo "== $name"
  local start=$SECONDS
  if "$@"; then
    echo "== $name: ok ($((SECONDS - start)) s)"
  else
    echo "== $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

# The Rust output is long: a failing test's own lines are repeated at the very end of the run.
rust_tests() {
  cargo test --release --workspace --no-fail-fast 2>&1 | tee "$POLARWAY_TEST_RUN_DIR/rust.log"
}
suite "Rust: unit and integration tests (real binaries, real clients, S3 and nginx on loopback)" \
  rust_tests
# Not a suite of its own: a suite whose install failed here installs again, and fails if it must.
echo
echo "== Installs of the suites below (scripts/prepare.sh, run during the Rust suite)"
if wait "$prepare_pid"; then
  grep '^== prepare' "$POLARWAY_TEST_RUN_DIR/prepare.log"
else
  tail -n 60 "$POLARWAY_TEST_RUN_DIR/prepare.log"
  echo "== installs failed (above): each suite below tries its own install again"
fi
prepare_pid=""   # ended: its number may belong to another process by the time the trap runs
# After the tests, so that clippy finds the build's artifacts in place.
suite "Rust: cargo fmt --check, cargo clippy -D warnings" bash scripts/lint-rust.sh
# The release binaries for every suite below (each script defaults to these too).
export POLARWAY_BIN="$POLARWAY_RELEASE_DIR/polarway"
export POLARWAY_GATEWAY_BIN="$POLARWAY_RELEASE_DIR/polarway-gateway"
suite "Smoke: grpcurl, reflection, grpc.health.v1" bash scripts/smoke.sh
suite "Python client" bash scripts/test-python.sh
suite "Arrow Flight SQL: pyarrow.flight, ADBC and JDBC on workers and through the gateway" bash scripts/test-flight.sh
suite "Go client" bash scripts/test-go.sh
suite "TypeScript client" bash scripts/test-typescript.sh
[ -f scripts/test-xlang.sh ] && suite "Cross-language: Go, TypeScript, Python, Rust on one server" bash scripts/test-xlang.sh
suite "Operations: Dockerfile, compose, Envoy, Kubernetes, Prometheus, Grafana validated; /metrics live" bash scripts/test-ops.sh
suite "Load-testing harness: a spawned cluster, TLS, open loop, fault mode" bash scripts/test-loadtest.sh

echo
if [ ${#failed[@]} -gt 0 ]; then
  if grep -q '^failures:$' "$POLARWAY_TEST_RUN_DIR/rust.log" 2>/dev/null; then
    echo "== Failing Rust tests, their output again:"
    # Each failing test's captured output ("---- name stdout ----" to the next "failures:").
    awk '/^---- .* stdout ----$/ {on=1} /^failures:$/ {on=0} on' "$POLARWAY_TEST_RUN_DIR/rust.log" | tail -n 150
  fi
  printf 'FAILED suites: %s\n' "${failed[*]}"
  exit 1
fi
echo "all suites passed"
