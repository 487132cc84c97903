#!/usr/bin/env bash
# Operations files (Dockerfile, compose files, envoy/envoy.yaml, deploy/k8s, deploy/prometheus,
# deploy/grafana): validated with the upstream Go libraries that read them, then cross-checked
# against the real binaries (--help, /metrics after a small workload). See docs/operations.md,
# "What was validated here and how".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "Go (1.26+) is required: https://go.dev/dl" >&2; exit 1; }
export POLARWAY_BIN="${POLARWAY_BIN:-$POLARWAY_RELEASE_DIR/polarway}"
export POLARWAY_GATEWAY_BIN="${POLARWAY_GATEWAY_BIN:-$(dirname "$POLARWAY_BIN")/polarway-gateway}"
for b in "$POLARWAY_BIN" "$POLARWAY_GATEWAY_BIN"; do
  [ -x "$b" ] || { echo "no binary at $b (cargo build --release --workspace)" >&2; exit 1; }
done

# moto_server: the S3-compatible server the worker's s3 store talks to (as the Rust s3 tests).
ensure_moto
MOTO="${POLARWAY_MOTO_SERVER:-$HOME/.cache/polarway/tools-venv/bin/moto_server}"

echo "== ops: gofmt, go vet, build the validator (scripts/validate-ops)"
check_gofmt scripts/validate-ops
(cd scripts/validate-ops && go mod download && go vet ./... && go build -o "$CARGO_TARGET_DIR/validate-ops" .)
# kubectl, when the machine has it, renders the kustomization offline (not required).
if command -v kubectl >/dev/null 2>&1; then
  echo "== ops: kubectl kustomize deploy/k8s"
  kubectl kustomize deploy/k8s >/dev/null
fi
echo "== ops: validate"
"$CARGO_TARGET_DIR/validate-ops" -root . -worker "$POLARWAY_BIN" -gateway "$POLARWAY_GATEWAY_BIN" -moto "$MOTO"
