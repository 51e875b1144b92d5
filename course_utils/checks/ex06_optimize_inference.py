"""Graders for ex06_optimize_inference (the source material's problem 3): make the digit CNN's
inference faster than eager PyTorch without losing accuracy, measured robustly."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..grading import Check, Verdict, expect, run_checks
from ..models import Trained, single_thread, train_digit_cnn
from ..paths import empty_dir
from ..tensorrt_engine import tensorrt_status
from ..timing import interleaved_ratio

REQUIRED_SPEEDUP = 1.3   # median of interleaved rounds, batch 1, one thread
ACCURACY_BUDGET = 0.005  # at most half a point below fp32
_TRAINED: list[Trained] = []


def reference_model() -> Trained:
    """The digit CNN to optimize (trained once per kernel, seeded).

    Introduced in ex06_optimize_inference.
    """
    if not _TRAINED:
        _TRAINED.append(train_digit_cnn())
    return _TRAINED[0]


def _eager(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()
    return predict


def grade(make_fast_predictor: Callable, work: Path, show: bool = True,
          make_gpu_predictor: Callable | None = None) -> list[Verdict]:
    """The predictor runs, keeps accuracy, and beats eager PyTorch by REQUIRED_SPEEDUP at batch 1.

    The GPU check (TensorRT FP16) is added only where TensorRT and a GPU exist.
    Introduced in ex06_optimize_inference.
    """
    work = empty_dir(work)
    trained = reference_model()
    x, y = trained.data.x_test, trained.data.y_test
    state: dict = {}

    def builds() -> None:
        predictor = make_fast_predictor(trained.model, work)
        expect(callable(predictor), f"return a function batch -> logits, got {type(predictor).__name__}")
        out = predictor(np.ascontiguousarray(x[:5]))
        expect(isinstance(out, np.ndarray) and out.shape == (5, 10),
               f"predictor(batch of 5) must return a (5, 10) NumPy array, got {getattr(out, 'shape', type(out))}")
        state["predict"] = predictor

    def accurate() -> None:
        predicted = np.concatenate([state["predict"](np.ascontiguousarray(x[i:i + 64])) for i in range(0, len(x), 64)])
        accuracy = float((predicted.argmax(1) == y).mean())
        expect(accuracy >= trained.test_accuracy - ACCURACY_BUDGET,
               f"accuracy {accuracy:.4f} is more than {ACCURACY_BUDGET} below fp32 ({trained.test_accuracy:.4f})")

    def faster() -> None:
        one = np.ascontiguousarray(x[:1])
        eager = _eager(trained.model)
        with single_thread():
            ratio = interleaved_ratio(lambda: eager(one), lambda: state["predict"](one), rounds=5, repeats=100)
        expect(ratio >= REQUIRED_SPEEDUP, f"your predictor is {ratio:.2f}x eager PyTorch at batch 1; need "
               f"{REQUIRED_SPEEDUP}x (try ONNX Runtime with graph optimizations, 1 thread)")

    checks = [Check("6.1", 2, "make_fast_predictor returns a working predictor", builds),
              Check("6.2", 2, f"accuracy within {ACCURACY_BUDGET} of fp32", accurate, ("6.1",)),
              Check("6.3", 3, f"at least {REQUIRED_SPEEDUP}x faster than eager PyTorch at batch 1 (interleaved)",
                    faster, ("6.1",))]
    available, _ = tensorrt_status()
    if available and make_gpu_predictor is not None:
        def gpu_matches() -> None:
            predictor = make_gpu_predictor(trained.model, work)
            predicted = predictor(np.ascontiguousarray(x[:64])).argmax(1)
            agreement = float((predicted == _eager(trained.model)(np.ascontiguousarray(x[:64])).argmax(1)).mean())
            expect(agreement >= 0.98, f"TensorRT agrees with PyTorch on only {agreement:.0%} of 64 images")
        checks.append(Check("6.4", 2, "TensorRT FP16 predictor agrees with PyTorch (GPU only)", gpu_matches, ("6.1",)))
    return run_checks(checks, show=show)
