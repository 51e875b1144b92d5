"""Plumbing for the quantization lesson: sizes, a calibration reader, the zero points of a QDQ file."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn


VNNI_FLAGS = {"avx512_vnni", "avx_vnni"}   # int8 dot products in one instruction


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them in /proc/cpuinfo (empty elsewhere); read once per process.

    Internal helper: no lesson calls it.
    """
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    return frozenset(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def cpu_features() -> dict[str, object]:
    """What decides this CPU's int8 and half-precision speed: its vector width, VNNI and bf16 instructions.

    Read from /proc/cpuinfo (Linux). VNNI (`avx512_vnni`, `avx_vnni`) gives int8 dot products;
    `avx512_bf16` and `amx_bf16` give bf16 arithmetic; `avx512_fp16` and `amx_fp16` fp16 arithmetic.
    A fact of the machine, not of the course: it differs between learners.

    Introduced in 07_quantization.
    """
    flags = cpu_flags()
    return {"vector instructions": torch.backends.cpu.get_cpu_capability(),
            "int8 dot products (VNNI)": bool(flags & VNNI_FLAGS),
            "bf16 arithmetic": bool(flags & {"avx512_bf16", "amx_bf16"}),
            "fp16 arithmetic": bool(flags & {"avx512_fp16", "amx_fp16"})}


def size_kb(model_or_file: nn.Module | Path) -> float:
    """Size in KiB of a model file, or of the tensors a module's saved state_dict holds (those its graph uses).

    Introduced in 07_quantization.
    """
    if isinstance(model_or_file, nn.Module):
        state = model_or_file.state_dict()
        if isinstance(model_or_file, torch.fx.GraphModule):
            # pt2e's convert keeps the float weights as attributes the graph no longer reads: count what it reads
            used = {node.target for node in model_or_file.graph.nodes if node.op == "get_attr"}
            state = {name: tensor for name, tensor in state.items() if name in used}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.tell() / 1024
    return Path(model_or_file).stat().st_size / 1024


class CalibrationReader:
    """Feeds calibration batches to onnxruntime.quantization.quantize_static.

    ONNX Runtime asks for one {input name: array} dict at a time and None when done.
    Introduced in 07_quantization.
    """

    def __init__(self, input_name: str, data: np.ndarray, batch_size: int = 32) -> None:
        self.input_name = input_name
        self.batches: Iterator[np.ndarray] = iter(np.array_split(data, max(1, len(data) // batch_size)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}


def qdq_zero_points(path: Path) -> dict[str, list[int]]:
    """The zero points of a QDQ ONNX file's QuantizeLinear nodes, grouped by integer type ("INT8", "UINT8").

    TensorRT accepts only symmetric signed int8: every zero point INT8 and 0.
    Introduced in 07_quantization.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    found: dict[str, set[int]] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) == 3 and node.input[2] in constants:
            tensor = constants[node.input[2]]
            values = numpy_helper.to_array(tensor).ravel().tolist()
            found.setdefault(onnx.TensorProto.DataType.Name(tensor.data_type), set()).update(int(v) for v in values)
    return {dtype: sorted(values) for dtype, values in sorted(found.items())}
