"""Start a real Triton for a grader and turn a load failure into a verdict the learner can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..machinery.grading import Fail, GradingSession
from ..servers.triton import ModelLoadError, TritonServer


def serve_for_grading(grading: GradingSession, repository: Path, work: Path, model: str,
                      extra_args: Sequence[str] = ()) -> TritonServer:
    """Start tritonserver on `repository` (with `extra_args`) for the grading session (which stops it after the
    checks), load `model`.

    A load error becomes a Fail that quotes the server's reason.
    Internal helper: no lesson calls it.
    """
    server = grading.serve(TritonServer(repository, Path(work) / "server", extra_args=extra_args))
    try:
        server.load(model)
    except ModelLoadError as err:
        reason = " ".join(str(err).splitlines()[0].split())[:300]
        raise Fail(f"Triton could not load {model!r}: {reason}") from None
    return server
