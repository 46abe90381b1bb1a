"""The committed generated modules match the .proto contract."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ["exchange", "catalog", "sharing", "query"]
GENERATED = [f"{proto}{suffix}" for proto in PROTOS for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def test_regenerating_the_protos_changes_nothing(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", *(f"protos/exchange/v1/{proto}.proto" for proto in PROTOS)],
        cwd=ROOT, check=True,
    )
    for name in GENERATED:
        committed = (ROOT / "protos/exchange/v1" / name).read_text()
        regenerated = (tmp_path / "protos/exchange/v1" / name).read_text()
        assert committed == regenerated, f"{name} is stale: run `make protos` and commit the result"
