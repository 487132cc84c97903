#!/usr/bin/env bash
# Go client (clients/go): check the generated code is fresh, gofmt and go vet, and run the suite
# against the real server binary on loopback ($POLARWAY_BIN, default $CARGO_TARGET_DIR/release/polarway).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "Go (1.26+) is required: https://go.dev/dl" >&2; exit 1; }
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
[ -x "$POLARWAY_BIN" ] || { echo "no server binary at $POLARWAY_BIN (cargo build --release --workspace)" >&2; exit 1; }

echo "== Go: generated code matches proto/ (clients/go/gen.sh into a temp dir)"
ensure_apt protoc protobuf-compiler
ensure_go_protoc_plugins
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash clients/go/gen.sh "$tmp"
# The header names the local protoc's version; everything else must be identical.
strip_protoc_version() { grep -Ev '^//[[:space:]-]*protoc[[:space:]]+v[0-9]' "$1"; }
for f in polarway.pb.go polarway_grpc.pb.go; do
  if ! diff -u <(strip_protoc_version "clients/go/internal/pb/$f") <(strip_protoc_version "$tmp/internal/pb/$f"); then
    echo "clients/go/internal/pb/$f is stale: run bash clients/go/gen.sh" >&2
    exit 1
  fi
done

echo "== Go: gofmt -l clients/go"
check_gofmt clients/go
cd clients/go
echo "== Go: go mod download, go vet"
go mod download
go vet ./...
echo "== Go: go test (real server, loopback)"
go test -count=1 -timeout 10m ./...
echo "== Go: concurrent use under the race detector"
ensure_apt gcc gcc
CGO_ENABLED=1 go test -race -count=1 -timeout 5m -run 'TestConcurrentUse|TestHeaders|TestRetryUntilServerIsUp' .
