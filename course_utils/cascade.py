"""The BLS cascade of lesson 17: its model folder, its decisions computed in-process, and its workload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .paths import PACKAGE_DIR
from .triton_config import io_tensor, model_config, write_python_model

DIGIT_CASCADE = PACKAGE_DIR / "triton_models" / "digit_cascade.py"


def write_cascade(repository: Path, cheap: nn.Module, threshold: float, expensive_model: str = "digits",
                  name: str = "digit_cascade") -> Path:
    """Write the cascade's folder `repository/name`: config.pbtxt, model.py and the cheap model's weights.

    `cheap` is the trained DigitLinear (its weights go to 1/cheap_model.npz); samples it classifies with a
    top probability below `threshold` go to `expensive_model`, which must take input__0 [1, 8, 8] and
    give output__0 [10] (the `digits` model of lesson 08).
    Introduced in 17_bls_cascade.
    """
    folder = Path(repository) / name
    config = model_config(name, backend="python", max_batch_size=8,
                          inputs=[io_tensor("input__0", "TYPE_FP32", [1, 8, 8])],
                          outputs=[io_tensor("LOGITS", "TYPE_FP32", [10]), io_tensor("EXPERT", "TYPE_BOOL", [1])],
                          dynamic_batching={})
    config.parameters["threshold"].string_value = repr(float(threshold))
    config.parameters["expensive_model"].string_value = expensive_model
    write_python_model(folder, config, DIGIT_CASCADE)
    linear = cheap.classifier[1]
    np.savez(folder / "1" / "cheap_model.npz", weight=linear.weight.detach().numpy(), bias=linear.bias.detach().numpy())
    return folder


def cascade_table(cheap: nn.Module, expensive: nn.Module, x: np.ndarray, y: np.ndarray,
                  thresholds: list[float]) -> pd.DataFrame:
    """Accuracy and the share of samples sent to the expensive model, per threshold, computed in-process.

    Introduced in 17_bls_cascade.
    """
    with torch.inference_mode():
        probabilities = torch.softmax(cheap.eval()(torch.from_numpy(x)), dim=1).numpy()
        expert = expensive.eval()(torch.from_numpy(x)).argmax(dim=1).numpy()
    confident = probabilities.max(axis=1)[:, None] >= np.array(thresholds)[None, :]
    rows = []
    for column, threshold in enumerate(thresholds):
        predicted = np.where(confident[:, column], probabilities.argmax(axis=1), expert)
        rows.append({"threshold": threshold, "sent to the expensive model": 1 - confident[:, column].mean(),
                     "accuracy": (predicted == y).mean()})
    return pd.DataFrame(rows)


def digits_input_data(path: Path, x: np.ndarray) -> Path:
    """Write perf_analyzer's --input-data JSON: one request per image of `x` (N, 1, 8, 8), as input__0.

    Introduced in 17_bls_cascade.
    """
    data = [{"input__0": {"content": image.ravel().tolist(), "shape": [1, 8, 8]}} for image in x]
    Path(path).write_text(json.dumps({"data": data}))
    return Path(path)
