"""The closing benchmark's plumbing: in-process load measured like perf_analyzer measures a
server, and the per-configuration numbers the summary table is built from.

`run_in_process` keeps `concurrency` threads calling the model back to back (a closed
loop, like perf_analyzer's concurrency mode) and returns the same columns as
`perf_analyzer.run_perf_analyzer`, so served and in-process rows sit in one table.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from .progress import progress
from .timing import time_function


def run_in_process(label: str, function: Callable[[], object], concurrencies: Sequence[int],
                   calls_per_level: int, warmup: int = 50) -> pd.DataFrame:
    """Call `function` from `concurrency` threads, `calls_per_level` calls in all per level.

    Returns one row per level: setup, concurrency, throughput (calls/s), p50/p90/p95/p99
    and avg latency in ms, stable=True (no stability criterion applies here).

    Introduced in 11_benchmark.
    """
    if calls_per_level < 1 or not concurrencies or min(concurrencies) < 1:
        raise ValueError(f"need calls_per_level >= 1 and concurrencies >= 1, got {calls_per_level} and {concurrencies}")
    for _ in range(warmup):
        function()
    rows = []
    for concurrency in progress(concurrencies, desc=f"in-process {label}"):
        latencies: list[float] = []
        lock = threading.Lock()
        per_thread = max(1, calls_per_level // concurrency)

        def client() -> None:
            mine = []
            for _ in range(per_thread):
                start = time.perf_counter()
                function()
                mine.append((time.perf_counter() - start) * 1000)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        rows.append({"setup": label, "concurrency": concurrency, "throughput": len(latencies) / elapsed,
                     **{f"p{q}_ms": float(np.percentile(latencies, q)) for q in (50, 90, 95, 99)},
                     "avg_ms": float(np.mean(latencies)), "stable": True})
    return pd.DataFrame(rows)


def configuration_numbers(results: pd.DataFrame, reference: Mapping[str, str]) -> pd.DataFrame:
    """One row per setup: p50 at concurrency 1, best throughput (and where), p99 there, and `latency_x`.

    `reference` maps a served setup to the in-process setup running the same model
    runtime; `latency_x` is served/in-process p50 at concurrency 1: how many times
    longer one served request takes than one call. (The share of in-process throughput
    needs the in-process rate at the batch size the server runs: lessons 11 and 12
    compute it from `samples_per_second`.)

    Introduced in 11_benchmark.
    """
    unknown = sorted(set(reference.values()) - set(results["setup"]))
    if unknown:
        raise ValueError(f"reference setups {unknown} are not in the results; measured: {sorted(results['setup'].unique())}")
    rows = []
    for setup, table in results.groupby("setup", sort=False):
        best = table.loc[table["throughput"].idxmax()]
        single = table[table["concurrency"] == table["concurrency"].min()].iloc[0]
        row = {"setup": setup, "p50_ms_c1": single["p50_ms"], "best_throughput": best["throughput"],
               "at_concurrency": int(best["concurrency"]), "p99_ms_there": best["p99_ms"],
               "all_stable": bool(table["stable"].all())}
        if setup in reference:
            ceiling = results[results["setup"] == reference[setup]]
            ceiling_single = ceiling[ceiling["concurrency"] == ceiling["concurrency"].min()].iloc[0]
            row["vs"] = reference[setup]
            row["latency_x"] = single["p50_ms"] / ceiling_single["p50_ms"]
        rows.append(row)
    return pd.DataFrame(rows)


def samples_per_second(function: Callable[[], object], batch: int, budget_s: float = 0.5) -> float:
    """Samples per second of `function`, one call computing `batch` samples, timed for about `budget_s`.

    Three warm-up calls (TorchScript optimizes a model during its first calls), then as many timed
    calls as fit in the budget (at least 3); the median call time gives the rate.
    Introduced in 11_benchmark.
    """
    warm = time_function("warm-up", function, warmup=2, repeats=1).median_ms / 1000   # the third call, timed
    repeats = max(3, int(budget_s / max(warm, 1e-6)))
    return batch / (time_function("rate", function, warmup=0, repeats=repeats).median_ms / 1000)
