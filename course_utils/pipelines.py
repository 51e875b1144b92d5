"""The digit pipeline of lesson 08: the model folders an ensemble is built from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .archiver import save_torchscript
from .paths import PACKAGE_DIR
from .triton_config import ModelConfig, io_tensor, model_config, write_config

DIGIT_PREPROCESS = PACKAGE_DIR / "triton_models" / "digit_preprocess.py"


def _preprocess_config(name: str = "preprocess") -> ModelConfig:
    """Config of the Python-backend step: IMAGE_BYTES (one encoded image) -> PIXELS [1, 8, 8]."""
    return model_config(name, backend="python", max_batch_size=8,
                        inputs=[io_tensor("IMAGE_BYTES", "TYPE_STRING", [1])],
                        outputs=[io_tensor("PIXELS", "TYPE_FP32", [1, 8, 8])])


def _classifier_config(name: str = "digits") -> ModelConfig:
    """Config of the TorchScript digit classifier: input__0 [1, 8, 8] -> output__0 [10] logits."""
    return model_config(name, platform="pytorch_libtorch", max_batch_size=16,
                        inputs=[io_tensor("input__0", "TYPE_FP32", [1, 8, 8])],
                        outputs=[io_tensor("output__0", "TYPE_FP32", [10])],
                        dynamic_batching={})   # no queue delay: lesson 05 measures what one costs


def write_pipeline_steps(repository: Path, model) -> list[Path]:
    """Write the `preprocess` and `digits` model folders into `repository`; return them.

    `model` is the trained DigitCNN (saved as TorchScript digits/1/model.pt).
    Introduced in 08_ensembles.
    """
    repository = Path(repository)
    preprocess_dir = repository / "preprocess"
    write_config(preprocess_dir, _preprocess_config())
    (preprocess_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGIT_PREPROCESS, preprocess_dir / "1" / "model.py")
    return [preprocess_dir, write_digit_classifier(repository, model)]


def write_digit_classifier(repository: Path, model, name: str = "digits") -> Path:
    """Write the TorchScript digit classifier's folder `repository/name` (input__0 [1, 8, 8] -> output__0 [10]).

    Internal helper: no lesson calls it.
    """
    folder = Path(repository) / name
    write_config(folder, _classifier_config(name))
    save_torchscript(model, folder / "1" / "model.pt")
    return folder


def png_batch(paths: list[Path]) -> np.ndarray:
    """Encoded image files as a (N, 1) object array of bytes: a TYPE_STRING batch.

    Introduced in 08_ensembles.
    """
    return np.array([[Path(p).read_bytes()] for p in paths], dtype=np.object_)
