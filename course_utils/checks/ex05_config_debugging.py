"""Graders for ex05_config_debugging: repair a broken config.pbtxt using the validator's
messages until Triton loads the model and answers like ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..machinery.grading import GradingSession, Rubric, Verdict, expect
from ..models import load_churn_model
from ..onnx_tools import export_onnx, onnx_session
from ..paths import empty_dir
from ..triton_config import Problem, read_config, validate_model
from .live_triton import serve_for_grading

MODEL_NAME = "churn_debug"

# Six mistakes, each one learners really make.
BROKEN_CONFIG = """\
name: "churn_debug"
platform: "onnxruntime_onnx"
max_batch_sise: 32
input [ { name: "input", data_type: TYPE_FP64, dims: [ -1, 4 ] } ]
output [ { name: "probabilities", data_type: TYPE_FP32, dims: [ 2 ] } ]
instance_group [ { count: 1, kind: KIND_GPU } ]
dynamic_batching { preferred_batch_size: [ 16, 64 ], max_queue_delay_microseconds: 200 }
"""

# check id -> points: the answer key
RUBRIC = Rubric({"5.1": 2, "5.2": 1, "5.3": 1, "5.4": 1,
                 "5.5": 2, "5.6": 1, "5.7": 2})


def write_broken_model(repository: Path) -> Path:
    """Write churn_debug/ (a correct 1/model.onnx, the broken config.pbtxt) into `repository`.

    Introduced in ex05_config_debugging.
    """
    folder = Path(repository) / MODEL_NAME
    trained = load_churn_model()
    export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:4]), folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(BROKEN_CONFIG)
    return folder


def _problems_about(problems: list[Problem], *words: str) -> list[Problem]:
    return [p for p in problems if any(w in p.field for w in words)]


def grade(fixed_config_text: Callable[[], str], work: Path, show: bool = True) -> list[Verdict]:
    """The repaired config validates field by field, keeps batching, and serves the model.

    Introduced in ex05_config_debugging.
    """
    work = empty_dir(work)
    grading = GradingSession()

    def parses() -> None:
        text = fixed_config_text()
        expect(isinstance(text, str) and text.strip(), "return the repaired config.pbtxt as a string")
        folder = write_broken_model(work / "model_repository")
        (folder / "config.pbtxt").write_text(text)
        grading.found["folder"] = folder
        grading.found["problems"] = validate_model(folder)
        syntax = _problems_about(grading.found["problems"], "config.pbtxt")
        expect(not syntax, f"{syntax[0].message if syntax else ''}")

    def no_problem(*words: str, hint: str) -> Callable[[], None]:
        def check() -> None:
            found = _problems_about(grading.found["problems"], *words)
            expect(not found, f"{found[0]} ({hint})" if found else "")
        return check

    def keeps_batching() -> None:
        config = read_config(grading.found["folder"])
        expect(config.max_batch_size == 32, f"max_batch_size is {config.max_batch_size}; keep batching with "
               "max_batch_size: 32 (the clients send up to 32 rows)")
        expect(config.HasField("dynamic_batching"), "the dynamic_batching block is gone: keep it; "
               "`dynamic_batching { }` is enough (Triton's batcher guide starts there)")
        preferred = list(config.dynamic_batching.preferred_batch_size)
        expect(all(size <= config.max_batch_size for size in preferred),
               f"preferred_batch_size {preferred} has a size over max_batch_size {config.max_batch_size}: use sizes "
               "within it, or drop preferred_batch_size (Triton's guide: only where it measurably helps)")

    def serves() -> None:
        expect(not grading.found["problems"], f"the validator still reports: {grading.found['problems'][0] if grading.found['problems'] else ''}")
        server = serve_for_grading(grading, grading.found["folder"].parent, work, MODEL_NAME)
        import tritonclient.http as httpclient

        x = load_churn_model().data.x_test[:20]
        request = httpclient.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        result = server.http_client().infer(MODEL_NAME, [request]).as_numpy("output")
        session = onnx_session(grading.found["folder"] / "1" / "model.onnx")
        expected = session.run(None, {"input": x})[0]
        expect(result is not None and np.allclose(result, expected, atol=1e-5),
               "Triton's output differs from ONNX Runtime's on the same file")

    checks = [RUBRIC.check("5.1", "the config parses (no misspelled field)", parses),
              RUBRIC.check("5.2", "tensor names match the ONNX file", no_problem("name", hint="names come from the ONNX graph"), ("5.1",)),
              RUBRIC.check("5.3", "data types match the ONNX file", no_problem("data_type", hint="see the model's metadata"), ("5.1",)),
              RUBRIC.check("5.4", "dims describe one sample (no batch dimension)", no_problem("dims", hint="max_batch_size adds the batch dim"), ("5.1",)),
              RUBRIC.check("5.5", "batching kept: max_batch_size 32 and dynamic batching (preferred sizes, if any, within it)",
                           keeps_batching, ("5.1",)),
              RUBRIC.check("5.6", "instance group runs on this machine (no GPU here)", no_problem("instance_group", hint="KIND_CPU"), ("5.1",)),
              RUBRIC.check("5.7", "Triton loads the model, with batching, and matches ONNX Runtime", serves, ("5.1", "5.5"))]
    return grading.run(checks, show=show)
