"""Start a real Triton for a grader and turn a load failure into a verdict the learner can act on."""

from __future__ import annotations

from pathlib import Path

from ..machinery.grading import Fail
from ..servers.triton import ModelLoadError, TritonServer


def serve_for_grading(repository: Path, work: Path, model: str, state: dict) -> TritonServer:
    """Start tritonserver on `repository`, keep it in state["server"] for the grader to stop, load `model`.

    A load error becomes a Fail that quotes the server's reason.
    Internal helper: no lesson calls it.
    """
    server = TritonServer(repository, Path(work) / "server")
    state["server"] = server.start()
    try:
        server.load(model)
    except ModelLoadError as err:
        reason = " ".join(str(err).splitlines()[0].split())[:300]
        raise Fail(f"Triton could not load {model!r}: {reason}") from None
    return server
