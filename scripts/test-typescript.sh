#!/usr/bin/env bash
# The TypeScript client's suite (clients/typescript): node's test runner against the real
# `polarway` binary ($POLARWAY_BIN), started by the tests on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
[ -x "$POLARWAY_BIN" ] || { echo "polarway binary not found at $POLARWAY_BIN (cargo build --release --workspace, or set POLARWAY_BIN)" >&2; exit 1; }

ensure_apt node nodejs
ensure_apt npm npm
ensure_apt openssl openssl      # the TLS tests make certificates
ensure_apt unshare util-linux   # the user guide example's /data
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { echo "Node >= 20 is required (found $(node --version))" >&2; exit 1; }

typescript_build
cd clients/typescript
npm run --silent typecheck   # the examples, tests and tools type-check against the built declarations
node --test --test-concurrency=1 test/*.test.mjs
