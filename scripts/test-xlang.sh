#!/usr/bin/env bash
# Cross-language test (docs/cross-language.md): on ONE real server, each client (Go, TypeScript,
# Python, Rust) stores the shared wide table, and every client loads every client's dataset and
# prints its canonical dump. Every dump must equal docs/xlang-wide.json byte for byte; so must each
# client's dump of the table it builds itself (no server), and of a dataset another client loaded
# and stored again (copy).
#   POLARWAY_BIN    server binary (default: $CARGO_TARGET_DIR/release/polarway)
#   POLARWAY_VENV   Python virtualenv to use/create (default: ~/.cache/polarway/venv)
# Like scripts/test-typescript.sh it runs `npm ci` in clients/typescript: do not run the two at once.
# Within one scripts/test.sh run it reuses what the Python and TypeScript suites installed (the
# virtualenv, node_modules and the build) instead of installing again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
root="$PWD"
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
[ -x "$POLARWAY_BIN" ] || { echo "no server binary at $POLARWAY_BIN (cargo build --release --workspace)" >&2; exit 1; }
golden="$root/docs/xlang-wide.json"
langs=(go typescript python rust)

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== installing and building the four tools"
# Python: the client into a virtualenv (as scripts/test-python.sh does, which installs a superset).
venv="${POLARWAY_VENV:-$HOME/.cache/polarway/venv}"
if run_done python-client "$venv" && [ -x "$venv/bin/python" ]; then
  echo "   Python: the client installed in $venv earlier in this run"
else
  ensure_python_venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check ./clients/python
fi
# TypeScript: npm ci and build (as scripts/test-typescript.sh does).
ensure_apt node nodejs
ensure_apt npm npm
typescript_build
# Go: build the helper.
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "Go (1.26+) is required: https://go.dev/dl" >&2; exit 1; }
(cd clients/go && go build -o "$tmp/xlang-go" ./cmd/xlang)
# Rust: the example, in the shared release build (`cargo test --release --workspace` already built
# it; --workspace keeps the feature set of every other build, so nothing else is rebuilt).
ensure_build_tools
cargo build -q --release --workspace --example xlang
rust_bin="$POLARWAY_RELEASE_DIR/examples/xlang"

# xlang LANG ARGS...: run one client's tool, bounded.
xlang() {
  local lang="$1"; shift
  case "$lang" in
    go) timeout 120 "$tmp/xlang-go" "$@" ;;
    typescript) timeout 120 node "$root/clients/typescript/tools/xlang.mjs" "$@" ;;
    python) timeout 120 "$venv/bin/python" "$root/clients/python/tools/xlang.py" "$@" ;;
    rust) timeout 120 "$rust_bin" "$@" ;;
  esac
}

passed=0
failed=0
# check LABEL FILE: FILE must equal the golden dump; prints "ok" or "FAIL" for the matrix.
check() {
  if cmp -s "$2" "$golden"; then
    passed=$((passed + 1)); printf '%-12s' ok
  else
    failed=$((failed + 1)); printf '%-12s' FAIL
    { echo "--- $1 differs from docs/xlang-wide.json:"; diff "$golden" "$2" | head -20 || true; } >>"$tmp/failures"
  fi
}
: >"$tmp/failures"

echo "== starting the server"
mkdir -p "$tmp/data"
RUST_LOG=warn "$POLARWAY_BIN" server --grpc-port 0 --data-dir "$tmp/data" >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
addr=""
for _ in $(seq 300); do # 30 s
  addr="$(sed -n 's/^polarway: listening on //p' "$tmp/server.out")"
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start:" >&2; cat "$tmp/server.err" >&2; exit 1; }
echo "   listening on $addr"

printf '\n%-26s' "fixture (no server)"
for r in "${langs[@]}"; do
  xlang "$r" fixture >"$tmp/fixture.$r" 2>>"$tmp/failures" || true
  check "$r fixture" "$tmp/fixture.$r"
done
echo

printf '\n%-26s' "dataset \\ reader"
printf '%-12s' "${langs[@]}"
echo
for w in "${langs[@]}"; do
  xlang "$w" store "$addr" "xlang_$w" >/dev/null 2>>"$tmp/failures" || echo "$w store failed" >>"$tmp/failures"
  printf '%-26s' "xlang_$w"
  for r in "${langs[@]}"; do
    xlang "$r" dump "$addr" "xlang_$w" >"$tmp/dump.$w.$r" 2>>"$tmp/failures" || true
    check "xlang_$w dumped by $r" "$tmp/dump.$w.$r"
  done
  echo
done

# And back: each client loads the Go-stored dataset and stores what it loaded; every client reads that.
printf '\n%-26s' "copied by X \\ reader"
printf '%-12s' "${langs[@]}"
echo
for x in "${langs[@]}"; do
  xlang "$x" copy "$addr" xlang_go "xlang_go_via_$x" >/dev/null 2>>"$tmp/failures" || echo "$x copy failed" >>"$tmp/failures"
  printf '%-26s' "xlang_go_via_$x"
  for r in "${langs[@]}"; do
    xlang "$r" dump "$addr" "xlang_go_via_$x" >"$tmp/copy.$x.$r" 2>>"$tmp/failures" || true
    check "xlang_go_via_$x dumped by $r" "$tmp/copy.$x.$r"
  done
  echo
done

echo
if [ "$failed" -gt 0 ]; then cat "$tmp/failures"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
