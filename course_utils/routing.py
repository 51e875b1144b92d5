"""Route users between model variants for an A/B test: sticky, split, recorded.

What the source material's `ABTestRouter` (a fresh `random.random()` per request)
lacks, and this module adds:

* sticky assignment: a user's key is hashed with the experiment's name, so the same
  user always sees the same variant, on every machine and after every restart;
* a split given per variant ({"A": 0.9, "B": 0.1}) and checked; raising B's share
  only moves users from A to B (nobody flips back), which is what a canary needs;
* one reused HTTP session, a timeout, and a record for every request: variant,
  status, latency, error; server errors and timeouts are counted, never raised;
* outcomes (did the user convert?) recorded per user, for the decision later;
* optional shadow traffic: one variant answers, another gets a copy whose answer is
  only recorded.
"""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import requests


@dataclass(frozen=True)
class Endpoint:
    """Where a variant answers: the full prediction URL and the headers it needs (e.g. a token)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Record:
    """One request as the router saw it. `error` is "" on success."""

    key: str
    variant: str
    status: int | None
    latency_ms: float
    error: str = ""
    answer: Any = None
    shadow: bool = False

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def label(self) -> str:
        """The variant's name, marked "(shadow)" for a shadow copy: the row it belongs to in a summary."""
        return f"{self.variant} (shadow)" if self.shadow else self.variant


def bucket(key: str, experiment: str) -> float:
    """Map a user key to a number in [0, 1) that depends only on (experiment, key).

    A cryptographic hash spreads keys evenly and is the same on every machine
    (Python's built-in hash() is salted per process, so it is not).

    Introduced in 09_ab_testing.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"a user key must be a non-empty string (e.g. a user id), got {key!r}")
    digest = hashlib.sha256(f"{experiment}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_split(split: Mapping[str, float], variants: Sequence[str] | None = None) -> dict[str, float]:
    """Return the split as a dict after checking it: known variants, shares in [0, 1], sum 1.

    Internal helper: no lesson calls it.
    """
    if not split:
        raise ValueError('the split is empty: give each variant its share, e.g. {"A": 0.9, "B": 0.1}')
    if variants is not None:
        unknown = [name for name in split if name not in variants]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown} in the split; the router knows {list(variants)}")
    for name, share in split.items():
        if not isinstance(share, (int, float)) or math.isnan(share) or not 0.0 <= share <= 1.0:
            raise ValueError(f"the share of variant {name!r} is {share!r}; each share must be a number in [0, 1]")
    total = sum(split.values())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"the shares add up to {total:.6g}, not 1: {dict(split)}")
    return dict(split)


def assign_variant(key: str, split: Mapping[str, float], experiment: str) -> str:
    """The variant a user sees: variants own consecutive slices of [0, 1) in the split's order.

    With {"A": 1 - s, "B": s}, B owns the top slice, so raising s only moves users
    from A to B.

    Introduced in 09_ab_testing.
    """
    split = check_split(split)
    point = bucket(key, experiment)
    upper = 0.0
    for name, share in split.items():
        upper += share
        if point < upper:
            return name
    return next(name for name, share in reversed(split.items()) if share > 0)  # rounding at the very top



class ABRouter:
    """Send each user's request to their variant, record everything, never crash the experiment.

    `variants` maps a variant name to its Endpoint; `split` gives each variant its
    share of users. `shadow`, if set, names a variant that receives a copy of every
    request served by another variant; its answer is recorded, never returned.
    Use as a context manager (or call close()) so the session and shadow thread end.

    Introduced in 09_ab_testing.
    """

    def __init__(self, variants: Mapping[str, Endpoint], split: Mapping[str, float], experiment: str,
                 timeout_s: float = 5.0, shadow: str | None = None) -> None:
        if not variants:
            raise ValueError("give at least one variant: {name: Endpoint(url, headers)}")
        if shadow is not None and shadow not in variants:
            raise ValueError(f"unknown shadow variant {shadow!r}; the router knows {list(variants)}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.variants = dict(variants)
        self.experiment = experiment
        self.timeout_s = timeout_s
        self.shadow = shadow
        self.split = check_split(split, list(self.variants))
        self.records: list[Record] = []
        self.outcomes: dict[str, tuple[str, bool]] = {}
        self._served: dict[str, str] = {}  # user key -> the variant that last answered them
        self._session = requests.Session()
        self._shadow_pool = ThreadPoolExecutor(max_workers=1) if shadow else None
        self._shadow_session = requests.Session() if shadow else None
        self._pending: list[Future] = []

    # ----- assignment --------------------------------------------------------------
    def set_split(self, split: Mapping[str, float]) -> None:
        """Change the split (a canary step); a bad split is refused and the old one kept."""
        self.split = check_split(split, list(self.variants))

    def variant_for(self, key: str) -> str:
        """The variant this user sees under the current split."""
        return assign_variant(key, self.split, self.experiment)

    # ----- requests ----------------------------------------------------------------
    def predict(self, key: str, payload: Any, variant: str | None = None) -> Record:
        """Send one user's request to their variant (or to `variant`, if given); return its Record.

        Server errors, timeouts and refused connections become a Record with
        `error` set; they are counted, not raised.
        """
        if variant is not None and variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; the router knows {list(self.variants)}")
        chosen = variant or self.variant_for(key)
        record = self._send(self._session, key, chosen, payload, shadow=False)
        self.records.append(record)
        self._served[key] = chosen
        if self._shadow_pool is not None and chosen != self.shadow:
            self._pending.append(self._shadow_pool.submit(self._send_shadow, key, payload))
        return record

    def _send_shadow(self, key: str, payload: Any) -> None:
        self.records.append(self._send(self._shadow_session, key, self.shadow, payload, shadow=True))

    def _send(self, session: requests.Session, key: str, variant: str, payload: Any, shadow: bool) -> Record:
        endpoint = self.variants[variant]
        start = time.perf_counter()
        try:
            response = session.post(endpoint.url, json=payload, headers=dict(endpoint.headers), timeout=self.timeout_s)
        except requests.Timeout:
            return Record(key, variant, None, _ms(start), f"timeout after {self.timeout_s} s", shadow=shadow)
        except requests.ConnectionError:
            return Record(key, variant, None, _ms(start),
                          f"connection refused at {endpoint.url}: is variant {variant}'s server running?", shadow=shadow)
        latency = _ms(start)
        if response.status_code != 200:
            return Record(key, variant, response.status_code, latency,
                          f"HTTP {response.status_code}: {response.text[:200]}", shadow=shadow)
        try:
            answer = response.json()
        except ValueError:
            return Record(key, variant, 200, latency, "the answer is not JSON", shadow=shadow)
        return Record(key, variant, 200, latency, answer=answer, shadow=shadow)

    def wait_for_shadow(self) -> None:
        """Wait until every shadow copy sent so far has its record."""
        for future in self._pending:
            future.result()
        self._pending.clear()

    # ----- outcomes and summary ----------------------------------------------------
    def record_outcome(self, key: str, success: bool) -> None:
        """Record the outcome metric for a user (e.g. converted, stayed), credited to their variant."""
        if key not in self._served:
            raise ValueError(f"user {key!r} never got a prediction from this router; call predict() first")
        self.outcomes[key] = (self._served[key], bool(success))

    def summary(self) -> pd.DataFrame:
        """Per variant: requests, errors, timeouts, latency percentiles, users with outcomes and success rate."""
        self.wait_for_shadow()
        rows = []
        names = list(self.variants) + ([f"{self.shadow} (shadow)"] if self.shadow else [])
        for name in names:
            records = [r for r in self.records if r.label == name]
            ok = [r.latency_ms for r in records if r.ok]
            results = [success for variant, success in self.outcomes.values() if variant == name]
            rows.append({"variant": name, "requests": len(records), "errors": sum(not r.ok for r in records),
                         "timeouts": sum(r.error.startswith("timeout") for r in records),
                         "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok else float("nan"),
                         "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok else float("nan"),
                         "users": len(results), "successes": int(sum(results)),
                         "success_rate": round(float(np.mean(results)), 4) if results else float("nan")})
        return pd.DataFrame(rows)

    def close(self) -> None:
        """Wait for shadow copies, then close the sessions."""
        if self._shadow_pool is not None:
            self.wait_for_shadow()
            self._shadow_pool.shutdown()
            self._shadow_session.close()
        self._session.close()

    def __enter__(self) -> "ABRouter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
