#!/usr/bin/env bash
# The TypeScript client's suite (clients/typescript): node's test runner against the real
# `polarway` binary ($POLARWAY_BIN), started by the tests on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

POLARWAY_BIN="${POLARWAY_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/polarway/target}/debug/polarway}"
export POLARWAY_BIN
[ -x "$POLARWAY_BIN" ] || { echo "polarway binary not found at $POLARWAY_BIN (build it, or set POLARWAY_BIN)" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_apt=()
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)   # the TLS tests make certificates
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux) # the user guide example's /data
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { echo "Node >= 20 is required (found $(node --version))" >&2; exit 1; }

cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
npm run --silent typecheck   # the examples type-check against the built declarations
node --test --test-concurrency=1 test/*.test.mjs
