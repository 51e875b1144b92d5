"""Plumbing for the quantization lesson: sizes, an eager-mode quantizable CNN, a calibration reader."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn


def size_kb(model_or_file: nn.Module | Path) -> float:
    """Size in KiB of a model file, or of a module's saved state_dict.

    Introduced in 07_quantization.
    """
    if isinstance(model_or_file, nn.Module):
        buffer = io.BytesIO()
        torch.save(model_or_file.state_dict(), buffer)
        return buffer.tell() / 1024
    return Path(model_or_file).stat().st_size / 1024


class QuantizableCNN(nn.Module):
    """The digit CNN between QuantStub and DeQuantStub, as eager static quantization needs.

    The stubs mark where float tensors become int8 and back. Introduced in 07_quantization.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.features = copy.deepcopy(model.features)
        self.classifier = copy.deepcopy(model.classifier)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.classifier(self.features(self.quant(x))))

    def fuse(self) -> "QuantizableCNN":
        """Fuse conv+relu and linear+relu pairs (one int8 kernel each); return self."""
        torch.ao.quantization.fuse_modules(
            self, [["features.0", "features.1"], ["features.2", "features.3"], ["classifier.1", "classifier.2"]],
            inplace=True)
        return self


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
