#!/usr/bin/env bash
# Regenerate the gRPC/protobuf stubs in src/polarway/v1/ from proto/polarway/v1/polarway.proto.
# Never edit the generated files by hand: change the .proto and run this script.
#
#   bash clients/python/scripts/gen_proto.sh [OUT_DIR]     (OUT_DIR defaults to clients/python/src)
#   PROTO_DIR=... to read the .proto from another tree than the repository's proto/
#
# Why no import rewriting: protoc runs with `-I proto`, so the file is named polarway/v1/polarway.proto
# and the generated modules land in OUT_DIR/polarway/v1/. The gRPC module's import
# (`from polarway.v1 import polarway_pb2`) then resolves to this package's own `polarway.v1`
# subpackage, so the stubs import as a normal package without any sed.
#
# Needs the pinned grpcio-tools (requirements-dev.txt): its version is stamped into the output,
# and tests/test_generated.py regenerates into a temp dir and compares.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/src}"
proto="${PROTO_DIR:-$repo/proto}"
python="${PYTHON:-python3}"
mkdir -p "$out/polarway/v1"
"$python" -m grpc_tools.protoc \
  -I "$proto" \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  "$proto/polarway/v1/polarway.proto"
