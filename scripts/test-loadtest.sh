#!/usr/bin/env bash
# Smoke test of the load-testing harness (loadtest/) against real binaries on loopback: a spawned
# cluster running every operation, TLS + token against one worker, a wrong token, the open loop,
# fault mode (kill -9 and restart of a worker mid-run), a 20 s soak with repeated kills and RSS
# sampling, 20 s of mutated requests, a bad scenario, and 60 s of the history checker on moto.
# About 4 minutes.
#   POLARWAY_BIN           worker binary (default: $CARGO_TARGET_DIR/release/polarway); the gateway
#                          binary is taken from the same directory
#   POLARWAY_LOADTEST_BIN  harness binary (default: $CARGO_TARGET_DIR/release/polarway-loadtest,
#                          built first with `cargo build --release --workspace`, the server
#                          command's build: `cargo test` does not build it, the package has no
#                          integration tests)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
BIN_DIR=$(dirname "$POLARWAY_BIN")
if [ -z "${POLARWAY_LOADTEST_BIN:-}" ]; then
  ensure_build_tools
  cargo build --release --workspace
  POLARWAY_LOADTEST_BIN="$POLARWAY_RELEASE_DIR/polarway-loadtest"
fi
LT=$POLARWAY_LOADTEST_BIN
for b in "$POLARWAY_BIN" "$BIN_DIR/polarway-gateway" "$LT"; do
  [ -x "$b" ] || { echo "$b not found: build the workspace (cargo build --release --workspace)" >&2; exit 1; }
done
ensure_python_venv   # python3 checks the JSON reports
command -v openssl >/dev/null 2>&1 || apt_install openssl

work=$(mktemp -d /tmp/polarway-loadtest-test.XXXXXX)
pids=()
cleanup() {
  # Quietly: bash would report each killed job.
  { for p in "${pids[@]}"; do kill -9 "$p" || true; done; wait || true; } 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export RUST_LOG=warn
passed=0 failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# check NAME JSON PYTHON_EXPR...: asserts over the report `r` (a dict); prints what failed.
check() {
  local name=$1 json=$2; shift 2
  if python3 - "$json" "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
ops = r.get("operations")
bad = [e for e in sys.argv[2:] if not eval(e)]
for e in bad:
    print("  assertion failed:", e, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
  then pass "$name"; else fail "$name"; fi
}

# 1. A spawned cluster (gateway + 3 workers), every operation, no error allowed.
if "$LT" -s loadtest/scenarios/smoke.toml --spawn-cluster 3 --bin-dir "$BIN_DIR" --fail-on-errors \
    --json "$work/smoke.json" --html "$work/smoke.html" >"$work/smoke.out" 2>&1; then
  check "spawned cluster: every operation succeeds, rows and bytes add up" "$work/smoke.json" \
    'set(ops) == {"store", "load", "load_stream", "query", "describe", "list"}' \
    'all(o["calls"] > 0 and o["ok"] == o["calls"] and not o["errors"] for o in ops.values())' \
    'ops["load"]["rows"] == ops["load"]["ok"] * 20000' \
    'ops["load_stream"]["rows"] == ops["load_stream"]["ok"] * 20000' \
    'ops["store"]["bytes_sent"] > ops["store"]["ok"] * 20000 * 4 * 8' \
    'ops["list"]["rows"] >= ops["list"]["ok"] * 6  # the datasets, plus the _w copies stores made' \
    'ops["query"]["rows"] == ops["query"]["ok"] * 100' \
    'all(0 < o["latency_ms"]["p50"] <= o["latency_ms"]["p99"] <= o["latency_ms"]["max"] for o in ops.values())' \
    'r["setup"]["datasets_stored"] == 6 and r["failures_total"] == 0' \
    'len(r["cache"]["workers"]) == 3 and r["cache"]["hits"] + r["cache"]["misses"] > 0' \
    'r["total"]["calls"] == sum(o["calls"] for o in ops.values()) and len(r["timeline"]) > 0'
  if grep -q "<svg" "$work/smoke.html" && grep -q "Latency histogram" "$work/smoke.html" && ! grep -qi "<script" "$work/smoke.html"; then
    pass "HTML report: inline SVG charts, no script"
  else fail "HTML report: inline SVG charts, no script"; fi
else
  cat "$work/smoke.out"; fail "spawned cluster run"
fi

# 2. One worker with TLS and a token: --tls-ca and --token; then a wrong token.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -days 1 -subj "/CN=test-ca" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -out "$work/server.pem" \
  -days 1 -extfile "$work/ext.cnf" 2>/dev/null
: >"$work/tls.out"   # exists before the first poll (the child opens it asynchronously)
"$POLARWAY_BIN" server --grpc-port 0 --data-dir "$work/tls" --auth-token s3cret \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key" >>"$work/tls.out" 2>"$work/tls.log" &
pids+=($!)
addr=""
for _ in $(seq 300); do
  addr=$(sed -n 's/^polarway: listening on //p' "$work/tls.out"); [ -n "$addr" ] && break; sleep 0.1
done
[ -n "$addr" ] || { cat "$work/tls.log"; exit 1; }
port=${addr##*:}
if "$LT" --target "https://127.0.0.1:$port" --tls-ca "$work/ca.pem" --token s3cret --fail-on-errors \
    --set datasets.count=2 --set mix.load=2 --set mix.describe=1 --set run.duration_secs=0 --set run.calls=60 \
    --json "$work/tls.json" >"$work/tls-run.out" 2>&1; then
  check "TLS + token against one worker" "$work/tls.json" \
    'r["total"]["calls"] == 60 and r["total"]["ok"] == 60' \
    'r["cache"]["workers"][0]["error"] is None'
else
  cat "$work/tls-run.out"; fail "TLS + token against one worker"
fi
if "$LT" --target "https://127.0.0.1:$port" --tls-ca "$work/ca.pem" --token wrong --fail-on-errors \
    --set datasets.count=2 --set datasets.setup=skip --set mix.load=0 --set mix.describe=1 --set run.duration_secs=0 \
    --set run.calls=20 --json "$work/badtoken.json" >"$work/badtoken.out" 2>&1; then
  fail "wrong token: the run should fail (--fail-on-errors)"
else
  check "wrong token: every call UNAUTHENTICATED, exit status 1" "$work/badtoken.json" \
    'r["total"]["ok"] == 0 and r["total"]["errors"] == {"UNAUTHENTICATED": 20}'
fi

# 3. Open loop: 200 calls/s for 2 s starts 400 calls whatever the latency.
if "$LT" --target "https://127.0.0.1:$port" --tls-ca "$work/ca.pem" --token s3cret --fail-on-errors \
    -s loadtest/scenarios/open-loop.toml --set datasets.count=2 --set datasets.setup=skip --set run.rate=200 \
    --set run.duration_secs=2 --json "$work/open.json" >"$work/open.out" 2>&1; then
  check "open loop: 200 calls/s for 2 s" "$work/open.json" \
    'r["total"]["calls"] == 400 and r["total"]["ok"] == 400' \
    'r["scenario"]["run"]["mode"] == "open"'
else
  cat "$work/open.out"; fail "open loop"
fi

# 4. Fault mode: worker 0 killed at 1.5 s, restarted 1.5 s later; the report says what failed.
if "$LT" -s loadtest/scenarios/fault.toml --spawn-cluster 3 --bin-dir "$BIN_DIR" --kill-worker-at 1.5 --restart-after 1.5 \
    --set run.duration_secs=6 --json "$work/fault.json" --html "$work/fault.html" >"$work/fault.out" 2>&1; then
  check "fault mode: kill -9 and restart reported, calls succeed after the restart" "$work/fault.json" \
    'r["fault"]["killed_at_s"] >= 1.5 and r["fault"]["restarted_at_s"] > r["fault"]["killed_at_s"]' \
    'r["fault"]["failed_total"] == r["failures_total"] == sum(sum(s.values()) for s in r["fault"]["failed"].values())' \
    'all(f["status"] != "OK" for f in r["failures"])' \
    'any(p["second"] >= 5 and p["calls"] > p["errors"] for p in r["timeline"])' \
    'r["total"]["ok"] > 0'
  grep -q "kill -9" "$work/fault.html" && pass "fault mode: HTML marks the kill" || fail "fault mode: HTML marks the kill"
else
  cat "$work/fault.out"; fail "fault mode"
fi

# 5. Soak, short: the soak scenario for 20 s, worker 0 killed every 6 s; every process's RSS sampled.
if "$LT" -s loadtest/scenarios/soak.toml --spawn-cluster 3 --bin-dir "$BIN_DIR" --kill-worker-at 3 --restart-after 1.5 \
    --kill-every 6 --set run.duration_secs=20 --json "$work/soak.json" --html "$work/soak.html" >"$work/soak.out" 2>&1; then
  check "soak: repeated kills reported, RSS of every process sampled with a slope" "$work/soak.json" \
    'len(r["fault"]["kills"]) >= 3 and all(k[1] is not None for k in r["fault"]["kills"])' \
    'sorted(m["process"] for m in r["memory"]) == ["gateway", "worker0", "worker1", "worker2"]' \
    'all(len(m["samples"]) >= 15 and 0 < m["start_mib"] <= m["peak_mib"] for m in r["memory"])' \
    'next(m for m in r["memory"] if m["process"] == "worker0")["lives"] >= 3' \
    'all(m["slope_mib_per_hour"] is not None for m in r["memory"] if m["process"] != "worker0")' \
    'r["total"]["ok"] > 0 and set(r["total"]["errors"]) <= {"UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"}'
  grep -q "Resident memory" "$work/soak.html" && pass "soak: HTML charts RSS" || fail "soak: HTML charts RSS"
else
  cat "$work/soak.out"; fail "soak"
fi

# 5b. Mutation mode, short: mutated requests of every method to the gateway and 2 workers for
#     POLARWAY_MUTATE_SECS (default 20 s); no process dies, hangs or leaks, the canary is intact.
if "$LT" --spawn-cluster 2 --bin-dir "$BIN_DIR" --mutate "${POLARWAY_MUTATE_SECS:-20}" \
    --json "$work/mutate.json" >"$work/mutate.out" 2>&1; then
  cat "$work/mutate.out"
  check "mutation: no process died, hung or leaked, the canary is intact, every method was sent" "$work/mutate.json" \
    'r["findings"] == [] and r["calls"] >= 200' \
    'sorted(r["by_method"]) == sorted(["Store", "StoreBatch", "Load", "Describe", "Query", "List", "Delete", "CacheStats", "Health"])' \
    'len({c for codes in r["by_method"].values() for c in codes}) >= 3'
else
  cat "$work/mutate.out"; fail "mutation mode"
fi

# 6. A scenario without a bound is refused with a clear message.
if "$LT" --target "http://127.0.0.1:1" --set run.duration_secs=0 --set run.calls=0 >"$work/bad.out" 2>&1; then
  fail "unbounded scenario refused"
elif grep -q "needs a bound" "$work/bad.out"; then pass "unbounded scenario refused"
else cat "$work/bad.out"; fail "unbounded scenario refused"; fi

# 7. History check: 8 clients storing under conditions and loading 3 datasets through 3 workers on
#    one S3 server (moto), a worker killed (-9) or S3 cut off every 6 s; every version is read back
#    and the history checked. POLARWAY_HISTORY_SECS sets the length (README: an hour-long run).
ensure_moto
s3_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto one request at a time: its threaded server is not atomic for conditional writes.
"$HOME/.cache/polarway/tools-venv/bin/python" scripts/s3-serial.py 127.0.0.1 "$s3_port" >"$work/moto.log" 2>&1 &
pids+=($!)
if python3 - "$s3_port" <<'EOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/polarway-history"
for _ in range(300):
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=5)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("moto_server did not start within 30 s")
EOF
then
  if AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
      "$LT" --spawn-cluster 3 --bin-dir "$BIN_DIR" --history "${POLARWAY_HISTORY_SECS:-60}" \
      --s3-endpoint "http://127.0.0.1:$s3_port" --s3-bucket polarway-history \
      --json "$work/history.json" --html "$work/history.html" >"$work/history.out" 2>&1; then
    cat "$work/history.out"
    check "history: no anomaly under kill -9 and S3 cuts, every kind of call and fault happened" "$work/history.json" \
      'r["anomalies"] == []' \
      'r["counts"]["stores_acknowledged"] > 20 and r["counts"]["loads_ok"] > 20' \
      'r["counts"]["stores_refused"] > 0  # conditions that did not hold' \
      'len({f["kind"] for f in r["faults"]}) == 2' \
      'all(v > 0 for v in r["versions"].values())'
    grep -q "No anomalies" "$work/history.html" && pass "history: HTML report" || fail "history: HTML report"
  else
    cat "$work/history.out"; fail "history check"
  fi
else
  cat "$work/moto.log"; fail "history check: moto_server"
fi

echo "loadtest: $passed passed, $failed failed"
[ "$failed" = 0 ]
