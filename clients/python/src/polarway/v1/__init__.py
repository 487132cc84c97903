"""Stubs generated from proto/polarway/v1/polarway.proto by scripts/gen_proto.sh (do not edit)."""
