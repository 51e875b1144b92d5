"""Triton's response cache (lesson 18): the server's flags, a model's switch, a skewed workload, the counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .paths import PACKAGE_DIR
from .servers.triton import triton_install_dir
from .triton_config import io_tensor, model_config, read_config, write_config

CLASS_SAMPLER = PACKAGE_DIR / "triton_models" / "class_sampler.py"
PIXEL_CHECK = PACKAGE_DIR / "triton_models" / "pixel_check.py"


def cache_flags(size_bytes: int) -> list[str]:
    """tritonserver's flags for a local response cache of `size_bytes` (in CPU memory, shared by all models).

    `--cache-directory` points at the cache libraries the embedded server ships (in a Triton container
    they are at the default, /opt/tritonserver/caches, and only `--cache-config` is needed).
    Introduced in 18_response_cache.
    """
    return [f"--cache-config=local,size={size_bytes}", f"--cache-directory={triton_install_dir() / 'caches'}"]


def enable_response_cache(model_dir: Path) -> Path:
    """Turn the response cache on in a model's config.pbtxt (`response_cache { enable: true }`); return the folder.

    Introduced in 18_response_cache.
    """
    config = read_config(model_dir)
    config.response_cache.enable = True
    write_config(model_dir, config)
    return Path(model_dir)


def zipf_order(items: int, count: int, exponent: float = 1.1, seed: int = 0) -> np.ndarray:
    """`count` indices into `items` things, item k drawn with probability proportional to (k + 1) ** -exponent.

    A few items are asked for most of the time and many rarely: how requests for popular inputs fall.
    Introduced in 18_response_cache.
    """
    weights = np.arange(1, items + 1, dtype=np.float64) ** -exponent
    return np.random.default_rng(seed).choice(items, size=count, p=weights / weights.sum())


def cache_counts(statistics: dict) -> tuple[int, int]:
    """(hits, misses) of one model from Triton's statistics API answer (`get_inference_statistics(model)`).

    Internal helper: no lesson calls it.
    """
    stats = statistics["model_stats"][0]["inference_stats"]
    return int(stats["cache_hit"]["count"]), int(stats["cache_miss"]["count"])


def write_class_sampler(repository: Path, name: str = "class_sampler") -> Path:
    """Write a model that samples a class from given probabilities (PROBABILITIES [10] -> CLASS [1]).

    Introduced in 18_response_cache.
    """
    folder = Path(repository) / name
    write_config(folder, model_config(name, backend="python", max_batch_size=8,
                                      inputs=[io_tensor("PROBABILITIES", "TYPE_FP32", [10])],
                                      outputs=[io_tensor("CLASS", "TYPE_INT64", [1])]))
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(CLASS_SAMPLER, folder / "1" / "model.py")
    return folder


def write_checked_ensemble(repository: Path, cached_model: str, name: str) -> Path:
    """Write `pixel_check` (refuses pixels outside [0, 1]) and an ensemble `name`: pixel_check, then `cached_model`.

    A bad request is refused by the first step, so the cached model never answers it (see lesson 18:
    Triton 2.51 caches a model's error response as an empty answer).
    Introduced in 18_response_cache.
    """
    repository = Path(repository)
    check = repository / "pixel_check"
    write_config(check, model_config("pixel_check", backend="python", max_batch_size=8,
                                     inputs=[io_tensor("input__0", "TYPE_FP32", [1, 8, 8])],
                                     outputs=[io_tensor("PIXELS", "TYPE_FP32", [1, 8, 8])]))
    (check / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(PIXEL_CHECK, check / "1" / "model.py")
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
  {{ model_name: "{cached_model}", model_version: -1,
    input_map {{ key: "input__0", value: "checked" }}, output_map {{ key: "output__0", value: "output__0" }} }}
] }}
""")
    return folder
