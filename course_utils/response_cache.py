"""Triton's response cache (lesson 18): the server's flags, a model's switch, a skewed workload, the counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .paths import PACKAGE_DIR
from .servers.triton import triton_install_dir
from .triton_config import io_tensor, model_config, read_config, write_config, write_python_model

CLASS_SAMPLER = PACKAGE_DIR / "triton_models" / "class_sampler.py"


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

    Introduced in 18_response_cache.
    """
    stats = statistics["model_stats"][0]["inference_stats"]
    return int(stats["cache_hit"]["count"]), int(stats["cache_miss"]["count"])


def write_class_sampler(repository: Path, name: str = "class_sampler") -> Path:
    """Write a model that samples a class from given probabilities (PROBABILITIES [10] -> CLASS [1]).

    Introduced in 18_response_cache.
    """
    return write_python_model(Path(repository) / name,
                              model_config(name, backend="python", max_batch_size=8,
                                           inputs=[io_tensor("PROBABILITIES", "TYPE_FP32", [10])],
                                           outputs=[io_tensor("CLASS", "TYPE_INT64", [1])]),
                              CLASS_SAMPLER)

