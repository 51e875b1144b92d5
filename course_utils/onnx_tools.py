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
    inside the .onnx file (Triton expects one model.onnx). The exporter's debug notes,
    which hold your file paths, are stripped (strip_debug_metadata).

    Introduced in 04_triton.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with quiet_exporter():
        torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_shapes=({0: batch},), external_data=False, dynamo=True, verbose=False)
    return strip_debug_metadata(path)


def strip_debug_metadata(path: Path) -> Path:
    """Remove the exporter's per-node debug notes (Python stack traces with your file paths) from an ONNX file.

    The dynamo exporter records, for every node, the Python source line it came from
    (`pkg.torch.onnx.stack_trace`, with absolute paths). They leak where your code lives
    and make the file's size depend on it; the model computes the same without them.

    Internal helper: no lesson calls it.
    """
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph] + [f for f in model.functions]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            graphs += [attribute.g for attribute in node.attribute if attribute.HasField("g")]
            graphs += list(node.attribute[i].graphs[j] for i in range(len(node.attribute))
                           for j in range(len(node.attribute[i].graphs)))
    onnx.save(model, str(path))
    return Path(path)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence torch.onnx's notes on optional torchvision ops and its deprecation warnings.

    Internal helper: no lesson calls it.
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


def onnx_session(path: Path, threads: int = 1, optimization: str = "all"):
    """An onnxruntime CPU InferenceSession for `path` with a fixed thread count.

    `optimization` is the graph optimization level: "disabled", "basic", "extended"
    or "all" (ONNX Runtime's default). On an x86 CPU without VNNI, ONNX Runtime's int8 (U8S8)
    products pass through a 16-bit intermediate that can saturate, so a quantized file would
    answer otherwise there than on a VNNI CPU; there the session sets `session.x64quantprecision`,
    which computes them exactly with a slower kernel. (On a VNNI CPU U8S8 is exact already, and
    the option would only slow it: measured 1.7x the time of fp32 instead of 0.9x.)
    Introduced in 05_triton_batching_and_operations.
    """
    import onnxruntime as ort

    levels = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {list(levels)}, got {optimization!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = levels[optimization]
    if lacks_vnni():
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def lacks_vnni() -> bool:
    """True on an x86 CPU without VNNI int8 dot products (avx512_vnni, avx_vnni), where ONNX Runtime's U8S8 can saturate.

    Internal helper: no lesson calls it.
    """
    import platform

    from .quantization import VNNI_FLAGS, cpu_flags

    return platform.machine().lower() in ("x86_64", "amd64") and not cpu_flags() & VNNI_FLAGS


def max_abs_diff(model: torch.nn.Module, onnx_path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between PyTorch's and ONNX Runtime's outputs on `x`.

    Introduced in 04_triton.
    """
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    session = onnx_session(onnx_path)
    actual = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(expected - actual).max())


class ParityError(AssertionError):
    """ONNX Runtime's outputs differ from PyTorch's by more than the tolerance."""


def parity_table(model: torch.nn.Module, onnx_path: Path, x: np.ndarray, batch_sizes=(1, 7, 64),
                 tolerance: float = 1e-4):
    """Compare PyTorch and ONNX Runtime at several batch sizes; raise ParityError beyond `tolerance`.

    Returns a pandas table (batch, max_abs_diff, within tolerance). The error message
    names the batch size, the difference and the tolerance. Introduced in 06_onnx_and_tensorrt.
    """
    import pandas as pd

    session = onnx_session(onnx_path)
    name = session.get_inputs()[0].name
    rows = []
    for batch in batch_sizes:
        sample = np.ascontiguousarray(x[:batch])
        with torch.inference_mode():
            expected = model.eval()(torch.from_numpy(sample)).numpy()
        try:
            actual = session.run(None, {name: sample})[0]
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ParityError(f"ONNX Runtime cannot run a batch of {batch}: {' '.join(str(err).split())[:220]} — "
                              "was the batch dimension exported as dynamic (dynamic_shapes)?") from None
        rows.append({"batch": batch, "max_abs_diff": float(np.abs(expected - actual).max())})
    table = pd.DataFrame(rows)
    table["within_tolerance"] = table.max_abs_diff <= tolerance
    worst = table.loc[table.max_abs_diff.idxmax()]
    if not worst.within_tolerance:
        raise ParityError(f"batch {int(worst.batch)}: max |PyTorch - ONNX Runtime| = {worst.max_abs_diff:.3e} "
                          f"> tolerance {tolerance:.0e}; export in eval() mode and check unsupported ops")
    return table
