#!/usr/bin/env bash
# Black-box checks of the built binary with standard tools: grpcurl lists the services through
# server reflection and calls grpc.health.v1; the binary refuses a bad flag.
#   POLARWAY_BIN    server binary (default: $CARGO_TARGET_DIR/release/polarway)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
[ -x "$BIN" ] || { echo "no server binary at $BIN (cargo build --release --workspace)" >&2; exit 1; }
export PATH="/usr/local/go/bin:$PATH"   # where the other scripts find Go (grpcurl is installed with it)
ensure_grpcurl
GRPCURL="$(command -v grpcurl || echo "$(go env GOPATH)/bin/grpcurl")"

work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" server --grpc-port 0 --data-dir "$work/data" > "$work/out" 2> "$work/err" &
pid=$!
addr=""
for _ in $(seq 1 300); do
  addr="$(sed -n 's/^polarway: listening on //p' "$work/out")"
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start"; cat "$work/err"; exit 1; }

passed=0; failed=0
check() {  # check NAME EXPECTED-REGEX COMMAND...
  local name="$1" want="$2"; shift 2
  local got
  got="$("$@" 2>&1 || true)"
  if grep -Eq "$want" <<<"$got"; then passed=$((passed+1)); echo "ok: $name";
  else failed=$((failed+1)); echo "FAILED: $name"; echo "$got" | head -20; fi
}
check "reflection lists polarway.v1.Polarway" '^polarway\.v1\.Polarway$' timeout 20 "$GRPCURL" -plaintext "$addr" list
check "reflection lists grpc.health.v1.Health" '^grpc\.health\.v1\.Health$' timeout 20 "$GRPCURL" -plaintext "$addr" list
check "reflection describes Store" 'rpc Store \( stream \.polarway\.v1\.StoreRequest \)' timeout 20 "$GRPCURL" -plaintext "$addr" describe polarway.v1.Polarway
check "grpc.health.v1 says SERVING" '"status": "SERVING"' timeout 20 "$GRPCURL" -plaintext "$addr" grpc.health.v1.Health/Check
check "Health says OK" '"status": "OK"' timeout 20 "$GRPCURL" -plaintext "$addr" polarway.v1.Polarway/Health
check "Describe of an unknown dataset is NotFound" 'Code: NotFound' timeout 20 "$GRPCURL" -plaintext -d '{"name":"nope"}' "$addr" polarway.v1.Polarway/Describe
check "a bad flag is refused" "unexpected argument '--no-such-flag'" "$BIN" server --no-such-flag
echo "smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
