"""Time a function the way benchmarks should: warm up first, repeat, report median and p90."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Repeated timings of one function, in milliseconds."""

    label: str
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90))


def time_function(label: str, function: Callable[[], object], warmup: int = 20, repeats: int = 200) -> Timing:
    """Call `function` `warmup` times untimed, then `repeats` times timed; return the Timing.

    Introduced in 05_triton_batching_and_operations.
    """
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(label, tuple(samples))


def interleaved_ratio(baseline: Callable[[], object], candidate: Callable[[], object], rounds: int = 5,
                      repeats: int = 50) -> float:
    """Median of per-round ratios baseline/candidate (> 1: candidate faster), timed alternately.

    Alternating the two in one process makes the ratio robust to a machine whose
    speed drifts (other jobs, CPU frequency). Internal helper: no lesson calls it.
    """
    ratios = []
    for _ in range(rounds):
        base = time_function("baseline", baseline, warmup=5, repeats=repeats).median_ms
        cand = time_function("candidate", candidate, warmup=5, repeats=repeats).median_ms
        ratios.append(base / cand)
    return float(np.median(ratios))
