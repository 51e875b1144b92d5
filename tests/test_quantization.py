"""Quantization plumbing: sizes, the quantizable CNN wrapper, the calibration reader."""

import numpy as np
import torch

from course_utils.models import train_digit_cnn
from course_utils.quantization import CalibrationReader, QuantizableCNN, size_kb


def test_calibration_reader_yields_batches_then_none():
    reader = CalibrationReader("input", np.zeros((100, 1, 8, 8), np.float32), batch_size=32)
    batches = []
    while (item := reader.get_next()) is not None:
        batches.append(item["input"])
    assert sum(len(b) for b in batches) == 100 and all(b.dtype == np.float32 for b in batches)


def test_static_quantized_cnn_is_smaller_and_agrees(tmp_path):
    digits = train_digit_cnn()
    torch.backends.quantized.engine = "x86"
    wrapped = QuantizableCNN(digits.model.eval()).eval().fuse()
    wrapped.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(wrapped)
    with torch.no_grad():
        prepared(torch.from_numpy(digits.data.x_train[:128]))
    quantized = torch.ao.quantization.convert(prepared)
    x = torch.from_numpy(digits.data.x_test)
    with torch.no_grad():
        agreement = (quantized(x).argmax(1) == digits.model(x).argmax(1)).float().mean().item()
    assert size_kb(quantized) < 0.5 * size_kb(digits.model) and agreement > 0.97
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 2048)
    assert size_kb(path) == 2.0
