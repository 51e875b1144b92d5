"""The digit pipeline of lesson 08: the model folders an ensemble is built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .archiver import save_torchscript
from .paths import PACKAGE_DIR
from .triton_config import ModelConfig, io_tensor, model_config, write_config, write_python_model

DIGIT_PREPROCESS = PACKAGE_DIR / "triton_models" / "digit_preprocess.py"
PIXEL_CHECK = PACKAGE_DIR / "triton_models" / "pixel_check.py"


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
    preprocess_dir = write_python_model(repository / "preprocess", _preprocess_config(), DIGIT_PREPROCESS)
    return [preprocess_dir, write_digit_classifier(repository, model)]


def write_digit_classifier(repository: Path, model, name: str = "digits") -> Path:
    """Write the TorchScript digit classifier's folder `repository/name` (input__0 [1, 8, 8] -> output__0 [10]).

    Introduced in 17_bls_cascade.
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


def write_checked_ensemble(repository: Path, model: str, name: str) -> Path:
    """Write `pixel_check` and an ensemble `name`: pixel_check (refuses pixels outside [0, 1]), then `model`.

    `model` is a digit model of the repository with the `digits` signature (input__0 [1, 8, 8] ->
    output__0 [10]). Lesson 17 measures the ensemble's Python step; lesson 18 puts the check in front of
    a cached model, so that the cached model never answers a bad request (Triton 2.51 caches a model's
    error response as an empty answer).
    Introduced in 17_bls_cascade.
    """
    repository = Path(repository)
    write_python_model(repository / "pixel_check",
                       model_config("pixel_check", backend="python", max_batch_size=8,
                                    inputs=[io_tensor("input__0", "TYPE_FP32", [1, 8, 8])],
                                    outputs=[io_tensor("PIXELS", "TYPE_FP32", [1, 8, 8])], dynamic_batching={}),
                       PIXEL_CHECK)
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(f"""name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "input__0", data_type: TYPE_FP32, dims: [ 1, 8, 8 ] }} ]
output [ {{ name: "output__0", data_type: TYPE_FP32, dims: [ 10 ] }} ]
ensemble_scheduling {{ step [
  {{ model_name: "pixel_check", model_version: -1,
    input_map {{ key: "input__0", value: "input__0" }}, output_map {{ key: "PIXELS", value: "checked" }} }},
  {{ model_name: "{model}", model_version: -1,
    input_map {{ key: "input__0", value: "checked" }}, output_map {{ key: "output__0", value: "output__0" }} }}
] }}
""")
    return folder
