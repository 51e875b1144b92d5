"""gRPC stubs for TorchServe, generated from the .proto files shipped inside TorchServe.

TorchServe's gRPC API (inference on one port, management on another) is defined
by inference.proto and management.proto, packed in ts/frontend/model-server.jar.
compile_torchserve_protos() extracts them and runs grpcio-tools' protoc, exactly
what you would do by hand with `python -m grpc_tools.protoc`.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path
from types import ModuleType

PROTOS = ("inference.proto", "management.proto")


def torchserve_jar() -> Path:
    """Path of the TorchServe frontend jar in this environment.

    Internal helper: no lesson calls it.
    """
    import ts

    return Path(ts.__file__).parent / "frontend" / "model-server.jar"


def protoc_command(proto_dir: Path, out_dir: Path) -> list[str]:
    """The `python -m grpc_tools.protoc ...` command that generates the Python stubs.

    Introduced in 03b_batching_and_model_management.
    """
    import google.rpc  # googleapis-common-protos: provides google/rpc/status.proto
    import grpc_tools

    includes = [proto_dir, Path(grpc_tools.__file__).parent / "_proto", Path(google.rpc.__path__[0]).parents[1]]
    return [sys.executable, "-m", "grpc_tools.protoc", *[f"-I{p}" for p in includes],
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *[str(proto_dir / p) for p in PROTOS]]


def compile_torchserve_protos(out_dir: Path) -> dict[str, ModuleType]:
    """Extract TorchServe's protos, compile them into out_dir and import the four modules.

    Returns {"inference_pb2", "inference_pb2_grpc", "management_pb2", "management_pb2_grpc"}.

    Introduced in 03b_batching_and_model_management.
    """
    import subprocess

    out_dir = Path(out_dir).resolve()
    proto_dir = out_dir / "proto"
    proto_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(torchserve_jar()) as jar:
        for name in PROTOS:
            (proto_dir / name).write_bytes(jar.read(f"proto/{name}"))
    result = subprocess.run(protoc_command(proto_dir, out_dir), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed:\n{result.stderr}")
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    names = ["inference_pb2", "inference_pb2_grpc", "management_pb2", "management_pb2_grpc"]
    return {name: importlib.import_module(name) for name in names}
