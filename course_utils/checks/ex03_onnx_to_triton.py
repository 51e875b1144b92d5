"""Graders for ex03_onnx_to_triton (the source material's problem 2): export a PyTorch
model to ONNX, write its Triton model folder, serve it and match PyTorch's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..machinery.grading import Fail, GradingSession, Rubric, Verdict, expect, run_checks
from ..models import Trained, load_churn_model
from ..onnx_tools import quiet_exporter
from ..paths import empty_dir
from ..triton_config import read_config, validate_model
from .hints import mismatch_hint
from .live_triton import serve_for_grading

MODEL_NAME = "churn_onnx"
TOLERANCE = 1e-4
MIN_BATCH = 16   # the task: max_batch_size of at least 16; check 3.10 sends a batch of exactly that
_TRAINED: list[Trained] = []

# check id -> points: the answer key
RUBRIC = Rubric({"3.1": 2, "3.2": 1, "3.3": 1, "3.4": 2, "3.5": 2, "3.6": 2,
                 "3.7": 1, "3.8": 2, "3.9": 2, "3.10": 2, "3.11": 1})


def reference_model() -> Trained:
    """The model to convert: the churn MLP trained with seed 2 (the shipped weights, loaded once per kernel).

    Introduced in ex03_onnx_to_triton.
    """
    if not _TRAINED:
        _TRAINED.append(load_churn_model(seed=2))
    return _TRAINED[0]


def _torch_outputs(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return reference_model().model.eval()(torch.from_numpy(x)).numpy()


def _exported(export_to_onnx: Callable, work: Path) -> Path:
    trained = reference_model()
    target = work / "model.onnx"
    with quiet_exporter():
        result = export_to_onnx(trained.model, torch.from_numpy(trained.data.x_test[:4]), target)
    expect(target.is_file(), f"no file at {target}: write the ONNX file to the `path` argument")
    expect(result is not None and Path(result) == target, f"return the path you wrote ({target}), got {result!r}")
    return target


def grade_export(export_to_onnx: Callable, work: Path, show: bool = True) -> list[Verdict]:
    """Part 1: export_to_onnx(model, example, path) writes an ONNX file that matches PyTorch at any batch size.

    Introduced in ex03_onnx_to_triton.
    """
    work = empty_dir(work)
    grading = GradingSession()

    def exports() -> None:
        grading.found["onnx"] = _exported(export_to_onnx, work)
        import onnx

        try:
            onnx.checker.check_model(onnx.load(str(grading.found["onnx"])))
        except Exception as err:  # noqa: BLE001 - any checker failure is the learner's to fix
            raise Fail(f"onnx.checker rejects the file: {str(err).splitlines()[0]}") from None

    def names() -> None:
        from ..onnx_tools import onnx_session

        session = onnx_session(grading.found["onnx"])
        inputs, outputs = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        expect(inputs == ["input"] and outputs == ["output"],
               f"tensor names are {inputs} -> {outputs}; export with input_names=['input'], output_names=['output']")

    def matches(batch: int) -> Callable[[], None]:
        def check() -> None:
            from ..onnx_tools import onnx_session

            x = reference_model().data.x_test[:batch]
            try:
                actual = onnx_session(grading.found["onnx"]).run(None, {"input": x})[0]
            except Exception as err:  # noqa: BLE001
                raise Fail(f"ONNX Runtime fails on a batch of {batch}: {str(err).splitlines()[0][:200]} — "
                           "make dimension 0 dynamic (dynamic_shapes / dynamic_axes)") from None
            difference = float(np.abs(actual - _torch_outputs(x)).max())
            expect(difference < TOLERANCE, f"max |ONNX - PyTorch| = {difference:.2e} > {TOLERANCE}: "
                   f"{mismatch_hint(reference_model().model, 'export')}")
        return check

    checks = [RUBRIC.check("3.1", "export_to_onnx writes a valid ONNX file", exports),
              RUBRIC.check("3.2", "the graph's tensors are named input and output", names, ("3.1",)),
              RUBRIC.check("3.3", "ONNX Runtime matches PyTorch on one sample", matches(1), ("3.1",)),
              RUBRIC.check("3.4", "ONNX Runtime matches PyTorch on a batch of 13 (dynamic batch axis)", matches(13), ("3.1",))]
    return run_checks(checks, show=show)


def _model_folder(export_to_onnx: Callable, write_model_folder: Callable, work: Path) -> Path:
    onnx_file = _exported(export_to_onnx, empty_dir(work / "export"))
    repository = empty_dir(work / "model_repository")
    result = write_model_folder(repository, onnx_file)
    folder = repository / MODEL_NAME
    expect((folder / "config.pbtxt").is_file(), f"no {MODEL_NAME}/config.pbtxt in the repository; "
           f"the model folder must be named {MODEL_NAME!r}")
    expect(result is not None and Path(result) == folder, f"return the model folder {folder}, got {result!r}")
    return folder


def grade_repository(export_to_onnx: Callable, write_model_folder: Callable, work: Path,
                     show: bool = True) -> list[Verdict]:
    """Part 2: write_model_folder(repository, onnx_file) writes a valid churn_onnx folder with batching.

    Introduced in ex03_onnx_to_triton.
    """
    work = empty_dir(work)
    grading = GradingSession()

    def folder() -> None:
        grading.found["folder"] = _model_folder(export_to_onnx, write_model_folder, work)
        expect((grading.found["folder"] / "1" / "model.onnx").is_file(),
               f"no {MODEL_NAME}/1/model.onnx: copy the ONNX file into version folder 1 under Triton's default name")

    def valid() -> None:
        problems = [p for p in validate_model(grading.found["folder"], gpu_available=True)]
        expect(not problems, f"{len(problems)} problem(s), first: {problems[0] if problems else ''}")

    def batching() -> None:
        config = read_config(grading.found["folder"])
        expect(config.platform == "onnxruntime_onnx", f'platform is {config.platform!r}; use platform: "onnxruntime_onnx"')
        expect(config.max_batch_size >= MIN_BATCH,
               f"max_batch_size is {config.max_batch_size}; allow batches of at least {MIN_BATCH}")
        expect(config.HasField("dynamic_batching"), "no dynamic_batching block: add dynamic_batching { }")

    checks = [RUBRIC.check("3.5", "write_model_folder creates churn_onnx/config.pbtxt and 1/model.onnx", folder, ("3.4",)),
              RUBRIC.check("3.6", "the config passes validate_model (names, dtypes, dims match the ONNX file)", valid, ("3.5",)),
              RUBRIC.check("3.7", f"onnxruntime_onnx platform, max_batch_size >= {MIN_BATCH} and dynamic batching", batching,
                           ("3.5",))]
    return run_checks(checks, show=show)


def grade_serving(export_to_onnx: Callable, write_model_folder: Callable, triton_predict: Callable,
                  work: Path, show: bool = True) -> list[Verdict]:
    """Part 3: serve the folder in a real Triton; triton_predict(url, model, batch) matches PyTorch.

    Introduced in ex03_onnx_to_triton.
    """
    work = empty_dir(work)
    grading = GradingSession()

    def loads() -> None:
        folder = _model_folder(export_to_onnx, write_model_folder, work)
        serve_for_grading(grading, folder.parent, work, MODEL_NAME)

    def predicts(batch: int) -> Callable[[], None]:
        def check() -> None:
            x = reference_model().data.x_test[:batch]
            result = triton_predict(grading.server.http_url, MODEL_NAME, x)
            expect(isinstance(result, np.ndarray), f"return a NumPy array (response.as_numpy('output')), got {type(result).__name__}")
            expect(result.shape == (batch, 2), f"expected shape ({batch}, 2), got {result.shape}")
            difference = float(np.abs(result - _torch_outputs(x)).max())
            expect(difference < TOLERANCE, f"max |Triton - PyTorch| = {difference:.2e} > {TOLERANCE}")
        return check

    def rejects_bad_input() -> None:
        from tritonclient.utils import InferenceServerException

        try:
            triton_predict(grading.server.http_url, MODEL_NAME, np.zeros((2, 3), np.float32))
        except InferenceServerException:
            return
        except Exception as err:  # noqa: BLE001
            raise Fail(f"a wrong shape should surface Triton's InferenceServerException, got {type(err).__name__}") from None
        raise Fail("a batch with 3 features was accepted: let Triton's error reach the caller")

    checks = [RUBRIC.check("3.8", "Triton loads your model folder", loads, ()),
              RUBRIC.check("3.9", "triton_predict matches PyTorch on 1 sample", predicts(1), ("3.8",)),
              RUBRIC.check("3.10", f"triton_predict matches PyTorch on a batch of {MIN_BATCH} (the max_batch_size asked for)",
                           predicts(MIN_BATCH), ("3.8",)),
              RUBRIC.check("3.11", "a wrong-shaped batch raises Triton's InferenceServerException", rejects_bad_input, ("3.8",))]
    return grading.run(checks, show=show)
