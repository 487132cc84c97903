"""The committed stubs are exactly what scripts/gen_proto.sh makes from proto/ today."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
GENERATED = ["polarway_pb2.py", "polarway_pb2.pyi", "polarway_pb2_grpc.py"]


def test_stubs_match_the_proto(tmp_path):
    subprocess.run(
        ["bash", str(HERE / "scripts/gen_proto.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    committed = HERE / "src/polarway/v1"
    for f in GENERATED:
        fresh = tmp_path / "polarway/v1" / f
        assert fresh.exists(), f
        assert filecmp.cmp(fresh, committed / f, shallow=False), (
            f"src/polarway/v1/{f} is stale: run clients/python/scripts/gen_proto.sh"
        )


def test_stubs_import_as_part_of_the_package():
    from polarway.v1 import polarway_pb2, polarway_pb2_grpc

    assert polarway_pb2.DESCRIPTOR.package == "polarway.v1"
    assert polarway_pb2_grpc.PolarwayStub.__module__ == "polarway.v1.polarway_pb2_grpc"
