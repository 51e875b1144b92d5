"""Graders for ex07_quantize_to_budget: an int8 ONNX model within a size and accuracy budget."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..grading import Check, Verdict, expect, run_checks
from ..models import Trained, train_digit_cnn
from ..onnx_tools import export_onnx, onnx_session
from ..paths import empty_dir
from ..quantization import size_kb

SIZE_BUDGET = 0.40       # of the fp32 file
ACCURACY_BUDGET = 0.01   # at most one point below fp32
AGREEMENT_FLOOR = 0.97
_TRAINED: list[Trained] = []


def fp32_model(work: Path) -> tuple[Trained, Path]:
    """The trained digit CNN and its fp32 ONNX file (written into `work`).

    Introduced in ex07_quantize_to_budget.
    """
    if not _TRAINED:
        _TRAINED.append(train_digit_cnn())
    trained = _TRAINED[0]
    return trained, export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]), Path(work) / "fp32.onnx")


def grade(quantize: Callable, work: Path, show: bool = True) -> list[Verdict]:
    """quantize(fp32_onnx, calibration, out_path) writes an int8 model within the budgets.

    Introduced in ex07_quantize_to_budget.
    """
    work = empty_dir(work)
    trained, fp32_onnx = fp32_model(work)
    x, y = trained.data.x_test, trained.data.y_test
    target = work / "int8.onnx"
    state: dict = {}

    def writes() -> None:
        result = quantize(fp32_onnx, trained.data.x_train[:256], target)
        expect(target.is_file(), f"no file at {target}: write the quantized model to `out_path`")
        expect(result is not None and Path(result) == target, f"return out_path ({target}), got {result!r}")
        session = onnx_session(target)
        state["logits"] = np.concatenate([session.run(None, {"input": x[i:i + 64]})[0] for i in range(0, len(x), 64)])

    def small() -> None:
        ratio = size_kb(target) / size_kb(fp32_onnx)
        expect(ratio <= SIZE_BUDGET, f"the file is {ratio:.0%} of fp32; the budget is {SIZE_BUDGET:.0%} (quantize the weights to int8)")

    def accurate() -> None:
        accuracy = float((state["logits"].argmax(1) == y).mean())
        expect(accuracy >= trained.test_accuracy - ACCURACY_BUDGET,
               f"accuracy {accuracy:.4f} is more than {ACCURACY_BUDGET} below fp32 ({trained.test_accuracy:.4f}); "
               "calibrate on representative data")

    def agrees() -> None:
        with torch.inference_mode():
            reference = trained.model(torch.from_numpy(x)).numpy().argmax(1)
        agreement = float((state["logits"].argmax(1) == reference).mean())
        expect(agreement >= AGREEMENT_FLOOR, f"agrees with fp32 on {agreement:.1%} of test images; need {AGREEMENT_FLOOR:.0%}")

    checks = [Check("7.1", 2, "quantize writes an ONNX model that ONNX Runtime runs", writes),
              Check("7.2", 2, f"file size at most {SIZE_BUDGET:.0%} of fp32", small, ("7.1",)),
              Check("7.3", 2, f"accuracy within {ACCURACY_BUDGET} of fp32", accurate, ("7.1",)),
              Check("7.4", 1, f"agrees with fp32 on at least {AGREEMENT_FLOOR:.0%} of test images", agrees, ("7.1",))]
    return run_checks(checks, show=show)
