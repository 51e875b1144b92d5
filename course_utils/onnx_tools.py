"""Export a PyTorch model to ONNX and check that ONNX Runtime gives the same answers."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path,
                input_name: str = "input", output_name: str = "output") -> Path:
    """Export `model` to one self-contained ONNX file with a dynamic batch dimension.

    Uses torch.onnx.export's current (dynamo) exporter: `dynamic_shapes` marks
    dimension 0 of the input as the batch, and external_data=False keeps the weights
    inside the .onnx file (Triton expects one model.onnx).

    Introduced in 04_triton.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with quiet_exporter():
        torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_shapes=({0: batch},), external_data=False, dynamo=True, verbose=False)
    return path


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx's notes on optional torchvision ops and its deprecation warnings.

    Introduced in 04_triton.
    """
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def onnx_session(path: Path, threads: int = 1):
    """An onnxruntime CPU InferenceSession for `path` with a fixed thread count.

    Introduced in 04_triton.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(model: torch.nn.Module, onnx_path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between PyTorch's and ONNX Runtime's outputs on `x`.

    Introduced in 04_triton.
    """
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    session = onnx_session(onnx_path)
    actual = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(expected - actual).max())
