"""Stateful models on Triton (lesson 20): the sequence batcher's config, the running-score model, its reference."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from tritonclient.grpc import model_config_pb2 as mc

from .paths import PACKAGE_DIR
from .triton_config import ModelConfig, io_tensor, model_config, write_python_model

RUNNING_SCORE = PACKAGE_DIR / "triton_models" / "running_score.py"
# The control inputs Triton fills for every request of a sequence, and the kind of each.
CONTROLS = {"START": "CONTROL_SEQUENCE_START", "END": "CONTROL_SEQUENCE_END",
            "READY": "CONTROL_SEQUENCE_READY", "CORRID": "CONTROL_SEQUENCE_CORRID"}


def add_sequence_batching(config: ModelConfig, strategy: str = "direct", idle_ms: int = 1000,
                          max_candidate_sequences: int = 0, max_queue_delay_us: int = 0) -> ModelConfig:
    """Give `config` a sequence batcher with the START/END/READY/CORRID control inputs; return it.

    `strategy` "direct" pins each sequence to one batch place (max_batch_size places per instance);
    "oldest" batches any waiting sequences' requests, oldest first, from up to `max_candidate_sequences`
    sequences at once. A sequence with no request for `idle_ms` is dropped by Triton.
    Internal helper: no lesson calls it.
    """
    if strategy not in ("direct", "oldest"):
        raise ValueError(f"strategy must be 'direct' or 'oldest', got {strategy!r}")
    batching = config.sequence_batching
    batching.max_sequence_idle_microseconds = idle_ms * 1000
    for name, kind in CONTROLS.items():
        control = batching.control_input.add(name=name).control.add(kind=kind)
        if name == "CORRID":
            control.data_type = mc.TYPE_UINT64
        else:
            control.fp32_false_true.extend([0, 1])
    if strategy == "direct":
        batching.direct.max_queue_delay_microseconds = max_queue_delay_us
    else:
        batching.oldest.max_candidate_sequences = max_candidate_sequences or 4 * max(config.max_batch_size, 1)
        batching.oldest.max_queue_delay_microseconds = max_queue_delay_us
    return config


def write_running_score(repository: Path, name: str = "running_score", strategy: str = "direct",
                        idle_ms: int = 1000, max_batch_size: int = 4, max_candidate_sequences: int = 0,
                        max_queue_delay_us: int = 0) -> Path:
    """Write the running-score model (VALUE [1] -> COUNT, MEAN, SCORE [1]) with a sequence batcher.

    Introduced in 20_stateful_models.
    """
    config = model_config(name, backend="python", max_batch_size=max_batch_size,
                          inputs=[io_tensor("VALUE", "TYPE_FP32", [1])],
                          outputs=[io_tensor("COUNT", "TYPE_INT64", [1]), io_tensor("MEAN", "TYPE_FP32", [1]),
                                   io_tensor("SCORE", "TYPE_FP32", [1])])
    add_sequence_batching(config, strategy, idle_ms, max_candidate_sequences, max_queue_delay_us)
    return write_python_model(Path(repository) / name, config, RUNNING_SCORE)


def running_scores(values: Iterable[float]) -> list[tuple[int, float, float]]:
    """What the running-score model answers for one sequence, computed here: (count, mean, score) per value.

    Introduced in 20_stateful_models.
    """
    answers, count, mean, m2 = [], 0, 0.0, 0.0
    for value in values:
        spread = math.sqrt(m2 / (count - 1)) if count >= 2 else 0.0
        score = (value - mean) / spread if spread > 0 else 0.0
        count += 1
        delta = value - mean
        mean += delta / count
        m2 += delta * (value - mean)
        answers.append((count, mean, score))
    return answers
