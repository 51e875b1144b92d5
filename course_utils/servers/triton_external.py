"""Use a Triton that runs elsewhere (the GPU docker stack) instead of starting one.

Set these environment variables (the stack's `jupyter` service sets them for you):

* TRITON_URL          HTTP host:port, e.g. localhost:8000
* TRITON_GRPC_URL     gRPC host:port (default: the HTTP port + 1)
* TRITON_METRICS_URL  metrics host:port (default: the HTTP port + 2)
* TRITON_CONTROL_KEY  the key of the server's restricted APIs (load/unload, repository index, ...)
* TRITON_REPOSITORY   the server's --model-repository as this machine sees it (optional; the
                      stack mounts work/). Without it the server must read the repository you write.

Then `TritonServer(...).start()` launches nothing and waits for the server to answer, and
load() first copies the model folder the notebook wrote into TRITON_REPOSITORY, unchanged:
the real onnxruntime, pytorch and TensorRT backends serve it as written. `stop()` leaves the
server running.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .lifecycle import address_from_env

TRITON_URL_ENV = "TRITON_URL"


def external_triton(repository: Path) -> dict[str, str] | None:
    """Addresses, control key and served repository of the external Triton named by TRITON_URL, or None.

    `repository` is the one the notebook writes: the served repository when TRITON_REPOSITORY is unset.
    Internal helper: no lesson calls it.
    """
    address = address_from_env(TRITON_URL_ENV, "localhost:8000", scheme_required=False)
    if address is None:
        return None
    _, host, port = address
    metrics = os.environ.get("TRITON_METRICS_URL", f"{host}:{port + 2}")
    served = os.environ.get("TRITON_REPOSITORY", "").strip()
    if served and not Path(served).is_dir():
        raise ValueError(f"TRITON_REPOSITORY={served!r} is not a folder: set it to the external server's "
                         "--model-repository as this machine sees it, or unset it")
    return {"http": f"{host}:{port}", "grpc": os.environ.get("TRITON_GRPC_URL", f"{host}:{port + 1}"),
            "metrics": metrics.split("://", 1)[-1].rstrip("/"), "repository": served or str(repository),
            "control_key": os.environ.get("TRITON_CONTROL_KEY", "")}


def copy_model_as_written(repository: Path, served: Path, model: str) -> None:
    """Copy the model folder you wrote into the external server's repository (nothing to do if it reads yours).

    Internal helper: no lesson calls it.
    """
    if Path(served) == Path(repository):
        return
    source = Path(repository) / model
    if not (source / "config.pbtxt").is_file():
        raise FileNotFoundError(f"{source} has no config.pbtxt; write the model folder before loading it")
    target = Path(served) / model
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=False)
