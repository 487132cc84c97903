#!/usr/bin/env bash
# Regenerate internal/pb from proto/polarway/v1/polarway.proto (the single source of truth).
#   bash clients/go/gen.sh [OUT_DIR]   # OUT_DIR defaults to clients/go; the code lands in OUT_DIR/internal/pb
# Needs protoc (Debian: protobuf-compiler) and the plugins at the versions pinned below:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# The proto has no go_package option, so the import path is given with M flags.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
module=github.com/polarway/polarway/clients/go
m="Mpolarway/v1/polarway.proto=$module/internal/pb;pb"
mkdir -p "$out/internal/pb"
PATH="$(go env GOPATH)/bin:$PATH" protoc -I "$here/../../proto" \
  --go_out="$out" --go_opt="module=$module,$m" \
  --go-grpc_out="$out" --go-grpc_opt="module=$module,$m" \
  polarway/v1/polarway.proto
