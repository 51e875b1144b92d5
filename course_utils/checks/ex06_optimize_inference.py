"""Graders for ex06_optimize_inference (the source material's problem 3): make the digit CNN's
inference faster than eager PyTorch without losing accuracy, measured robustly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..machinery.grading import GradingSession, Rubric, Verdict, expect, run_checks
from ..models import Trained, load_digit_cnn, single_thread
from ..paths import empty_dir
from ..tensorrt_engine import tensorrt_status
from ..timing import interleaved_ratio

REQUIRED_SPEEDUP = 1.3   # median of interleaved rounds, batch 1, one thread
ACCURACY_BUDGET = 0.005  # at most half a point below fp32
ROUNDS, REPEATS = 5, 100
MAX_CORES = 1.3          # CPU seconds per wall second while timing: one thread against one thread
_TRAINED: list[Trained] = []

# check id -> points: the answer key
RUBRIC = Rubric({"6.1": 2, "6.2": 2, "6.3": 3, "6.4": 2}, optional={"6.4"})


def reference_model() -> Trained:
    """The digit CNN to optimize (the shipped weights, loaded once per kernel).

    Introduced in ex06_optimize_inference.
    """
    if not _TRAINED:
        _TRAINED.append(load_digit_cnn())
    return _TRAINED[0]


def fresh_inputs(x: np.ndarray, count: int, seed: int = 6) -> list[np.ndarray]:
    """`count` single-image batches, every one different (test images with a little noise).

    A predictor timed on the same input again and again could answer from a cache.
    Internal helper: no lesson calls it.
    """
    rng = np.random.default_rng(seed)
    return [np.ascontiguousarray(x[i % len(x)][None] + rng.normal(0, 0.01, x.shape[1:]).astype(np.float32))
            for i in range(count)]


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
    grading = GradingSession()

    def builds() -> None:
        predictor = make_fast_predictor(trained.model, work)
        expect(callable(predictor), f"return a function batch -> logits, got {type(predictor).__name__}")
        out = predictor(np.ascontiguousarray(x[:5]))
        expect(isinstance(out, np.ndarray) and out.shape == (5, 10),
               f"predictor(batch of 5) must return a (5, 10) NumPy array, got {getattr(out, 'shape', type(out))}")
        grading.found["predict"] = predictor

    def accurate() -> None:
        predicted = np.concatenate([grading.found["predict"](np.ascontiguousarray(x[i:i + 64])) for i in range(0, len(x), 64)])
        accuracy = float((predicted.argmax(1) == y).mean())
        expect(accuracy >= trained.test_accuracy - ACCURACY_BUDGET,
               f"accuracy {accuracy:.4f} is more than {ACCURACY_BUDGET} below fp32 ({trained.test_accuracy:.4f})")

    def faster() -> None:
        calls = ROUNDS * (REPEATS + 5)   # time_function warms up with 5 calls per round
        eager = _eager(trained.model)
        eager_inputs, their_inputs = iter(fresh_inputs(x, calls, seed=1)), fresh_inputs(x, calls, seed=2)
        answers: list[np.ndarray] = []
        feed = iter(their_inputs)
        with single_thread():
            began_cpu, began = time.process_time(), time.perf_counter()
            ratio = interleaved_ratio(lambda: eager(next(eager_inputs)),
                                      lambda: answers.append(grading.found["predict"](next(feed))), ROUNDS, REPEATS)
            cores = (time.process_time() - began_cpu) / (time.perf_counter() - began)
        wanted = eager(np.concatenate(their_inputs[:len(answers)])).argmax(1)
        wrong = int((np.concatenate(answers).argmax(1) != wanted).sum())
        expect(wrong <= len(answers) * 0.01, f"while being timed, your predictor gave another class than the model "
               f"for {wrong} of {len(answers)} inputs (each input was new): speed counts only with right answers")
        expect(cores <= MAX_CORES, f"the timing used {cores:.1f} cores; the comparison is one thread against one: "
               "set intra_op_num_threads = 1 (and inter_op_num_threads = 1) in the session options")
        expect(ratio >= REQUIRED_SPEEDUP, f"your predictor is {ratio:.2f}x eager PyTorch at batch 1; need "
               f"{REQUIRED_SPEEDUP}x (try ONNX Runtime with graph optimizations, 1 thread)")

    checks = [RUBRIC.check("6.1", "make_fast_predictor returns a working predictor", builds),
              RUBRIC.check("6.2", f"accuracy within {ACCURACY_BUDGET} of fp32", accurate, ("6.1",)),
              RUBRIC.check("6.3", f"at least {REQUIRED_SPEEDUP}x faster than eager PyTorch at batch 1 (interleaved, new "
                           "inputs, right answers, one thread)", faster, ("6.1", "6.2"))]
    available, _ = tensorrt_status()
    if available and make_gpu_predictor is not None:
        def gpu_matches() -> None:
            predictor = make_gpu_predictor(trained.model, work)
            predicted = predictor(np.ascontiguousarray(x[:64])).argmax(1)
            agreement = float((predicted == _eager(trained.model)(np.ascontiguousarray(x[:64])).argmax(1)).mean())
            expect(agreement >= 0.98, f"TensorRT agrees with PyTorch on only {agreement:.0%} of 64 images")
        checks.append(RUBRIC.check("6.4", "TensorRT FP16 predictor agrees with PyTorch (GPU only)", gpu_matches, ("6.1",)))
    return run_checks(checks, show=show)
