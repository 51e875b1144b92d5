"""A small closed-loop HTTP load generator: N clients, each sending its next request
as soon as the previous answer arrives. Used to compare server settings."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import requests
from .progress import progress as progress_bar


@dataclass
class LoadResult:
    """Latencies (ms) of successful requests, the others counted by kind, and the wall time.

    `failures` maps an HTTP status (503) or a client error ("ConnectionError", "ReadTimeout")
    to how often it happened.
    """

    label: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[int | str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_ms) / self.duration_s if self.duration_s else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        """One row for a results table."""
        return {"setting": self.label, "concurrency": self.concurrency, "requests": len(self.latencies_ms),
                "errors": sum(self.failures.values()), "p50_ms": round(self.percentile(50), 2),
                "p90_ms": round(self.percentile(90), 2), "p99_ms": round(self.percentile(99), 2),
                "throughput_rps": round(self.throughput, 1)}


def run_load(send: Callable[[requests.Session], requests.Response], requests_total: int, concurrency: int,
             label: str = "", warmup: int = 5, progress: bool = True, timeout_s: float = 120.0,
             stop: threading.Event | None = None) -> LoadResult:
    """Send `requests_total` requests from `concurrency` clients; return latencies and errors.

    `send(session)` performs one request with the given session (one session per
    client, so connections are reused) and returns the response. A request that
    fails (an error status, a refused connection, a timeout) is counted by kind and
    the load goes on. The loop is bounded by count, by `timeout_s` and by `stop`, once it is set.

    Introduced in 03a_archiving_and_configuration.
    """
    if requests_total < 1 or concurrency < 1:
        raise ValueError(f"requests_total and concurrency must be >= 1, got {requests_total} and {concurrency}")
    result = LoadResult(label, concurrency)
    lock = threading.Lock()
    remaining = [requests_total]
    deadline = time.monotonic() + timeout_s
    bar = progress_bar(total=requests_total, desc=label or "requests", enabled=progress)

    def client() -> None:
        with requests.Session() as session:
            for _ in range(warmup):
                with contextlib.suppress(requests.RequestException):
                    send(session)
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                start = time.perf_counter()
                try:
                    outcome: int | str = send(session).status_code
                except requests.RequestException as error:   # refused, reset, timed out: counted, not fatal
                    outcome = type(error).__name__
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    if outcome == 200:
                        result.latencies_ms.append(elapsed)
                    else:
                        result.failures[outcome] = result.failures.get(outcome, 0) + 1
                    bar.update(1)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    result.duration_s = time.perf_counter() - start
    bar.close()
    return result


def run_load_for(send: Callable[[requests.Session], requests.Response], seconds: float, concurrency: int,
                 label: str = "", stop: threading.Event | None = None) -> LoadResult:
    """run_load() by the clock: `concurrency` clients send for `seconds` (or until `stop` is set), with no
    warm-up and no progress bar.

    For a load that runs beside something else (a fault, a scrape), where a fixed count would end at an
    unknown time. Introduced in 22_watching_servers.
    """
    return run_load(send, requests_total=sys.maxsize, concurrency=concurrency, label=label, warmup=0, progress=False,
                    timeout_s=seconds, stop=stop)
