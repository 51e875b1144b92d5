"""Tuning a model's config against a latency SLO (lesson 21): candidate configs, a perf_analyzer sweep, the frontier.

One model folder is copied once per candidate (instances x max batch size x queue delay), each copy is loaded
alone on one server and measured with perf_analyzer at several concurrencies, and the table is read for the
configuration that serves the most inferences per second with p99 latency under the SLO.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import pandas as pd

from .perf_analyzer import run_perf_analyzer
from .triton_config import read_config, write_config

if TYPE_CHECKING:
    from .servers.triton import TritonServer


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: model instances, max_batch_size (1: no batching) and the batcher's queue delay.

    Introduced in 21_tuning_to_an_slo.
    """

    instances: int
    max_batch_size: int
    delay_us: int = 0

    def __post_init__(self) -> None:
        if self.instances < 1 or self.max_batch_size < 1 or self.delay_us < 0:
            raise ValueError(f"{self}: instances and max_batch_size start at 1, delay_us at 0")
        if self.max_batch_size == 1 and self.delay_us:
            raise ValueError(f"{self}: a queue delay needs batching (max_batch_size above 1)")

    @property
    def name(self) -> str:
        """A model name that says the configuration, e.g. i2_b16_d500."""
        return f"i{self.instances}_b{self.max_batch_size}_d{self.delay_us}"


def write_candidate(source: Path, repository: Path, candidate: Candidate, prefix: str = "") -> str:
    """Copy the model folder `source` into `repository` as `<prefix><candidate.name>` with the candidate's config.

    Returns the new model's name. With max_batch_size 1 the dynamic batcher is left out (there is
    nothing to batch). Introduced in 21_tuning_to_an_slo.
    """
    name = f"{prefix}{candidate.name}"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"model name {name!r}: use letters, digits, '_' and '-' in the prefix")
    dest = Path(repository) / name
    if dest.resolve() == Path(source).resolve():
        raise ValueError(f"{dest} is the source folder itself: give the candidates a prefix")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    config = read_config(dest)
    config.name = name
    config.max_batch_size = candidate.max_batch_size
    del config.instance_group[:]
    config.instance_group.add(count=candidate.instances, kind="KIND_CPU")
    config.ClearField("dynamic_batching")
    if candidate.max_batch_size > 1:
        config.dynamic_batching.max_queue_delay_microseconds = candidate.delay_us
    write_config(dest, config)
    return name


def sweep(triton: "TritonServer", source: Path, candidates: Iterable[Candidate], concurrencies: Sequence[int], out_dir: Path,
          prefix: str = "", **perf_options) -> pd.DataFrame:
    """Measure every candidate alone on `triton` with perf_analyzer at each concurrency; one row per measurement.

    Each candidate is written next to `source`, loaded, measured and unloaded before the next (so
    candidates do not share the CPU). Keyword `perf_options` go to run_perf_analyzer().
    Introduced in 21_tuning_to_an_slo.
    """
    tables = []
    for candidate in candidates:
        name = write_candidate(source, Path(source).parent, candidate, prefix)
        triton.load(name)
        try:
            table = run_perf_analyzer(name, triton.grpc_url, Path(out_dir), concurrencies, label=candidate.name,
                                      protocol="grpc", **perf_options)
        finally:
            triton.unload(name)
        table.insert(1, "instances", candidate.instances)
        table.insert(2, "max_batch_size", candidate.max_batch_size)
        table.insert(3, "delay_us", candidate.delay_us)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def latency_frontier(table: pd.DataFrame, latency: str = "p99_ms") -> pd.DataFrame:
    """The measurements no other beats on both counts (more throughput at no more latency), fastest first.

    Introduced in 21_tuning_to_an_slo.
    """
    ordered = table.sort_values([latency, "throughput"], ascending=[True, False])
    best, keep = -1.0, []
    for index, row in ordered.iterrows():
        if row["throughput"] > best:
            keep.append(index)
            best = row["throughput"]
    return table.loc[keep]


def best_under_slo(table: pd.DataFrame, slo_ms: float, latency: str = "p99_ms") -> pd.Series | None:
    """The measurement with the most throughput whose `latency` is at most `slo_ms` (None if none meets it).

    Introduced in 21_tuning_to_an_slo.
    """
    meeting = table[table[latency] <= slo_ms].sort_values(["throughput", latency], ascending=[False, True])
    return None if meeting.empty else meeting.iloc[0]   # a tie in throughput goes to the lower latency


def compare_paired(url: str, baseline: str, model: str, concurrency: int, out_dir: Path, rounds: int = 3,
                   **perf_options) -> pd.DataFrame:
    """Measure `model` against `baseline` (both loaded on the server at `url`) in `rounds` pairs of perf_analyzer
    runs back to back, the order alternating; one row per pair, with `model`'s throughput and p99 as ratios of
    `baseline`'s.

    A busy moment on a shared machine slows both runs of a pair alike, so the median of the ratios is steadier
    than one sweep's numbers measured a minute apart. Introduced in 21_tuning_to_an_slo.
    """
    models, rows = [baseline, model], []
    for index in range(rounds):
        pair = {}
        for name in models if index % 2 == 0 else models[::-1]:
            pair[name] = run_perf_analyzer(name, url, Path(out_dir), [concurrency], protocol="grpc",
                                           **perf_options).iloc[0]
        rows.append({"round": index + 1,
                     "baseline_throughput": pair[baseline]["throughput"], "throughput": pair[model]["throughput"],
                     "baseline_p99_ms": pair[baseline]["p99_ms"], "p99_ms": pair[model]["p99_ms"],
                     "throughput_ratio": pair[model]["throughput"] / pair[baseline]["throughput"],
                     "p99_ratio": pair[model]["p99_ms"] / pair[baseline]["p99_ms"]})
    return pd.DataFrame(rows)
