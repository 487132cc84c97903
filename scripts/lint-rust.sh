#!/usr/bin/env bash
# The Rust habits the test command holds the code to: rustfmt's layout and clippy without warnings
# (every crate, tests and examples included). Same profile and flags as every other cargo command
# here (`--release --workspace`), so clippy reuses the build's build-script outputs (DuckDB's C++
# is not compiled again).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_build_tools
for tool in rustfmt clippy; do
  if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$tool"
  fi
done
echo "== cargo fmt --all --check"
if ! cargo fmt --all --check; then
  echo "rustfmt would change the files above: run 'cargo fmt --all'" >&2
  exit 1
fi
echo "== cargo clippy --release --workspace --all-targets -- -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings
