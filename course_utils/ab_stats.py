"""Decide an A/B test on a yes/no outcome: two-proportion z-test, sample size, simulation.

Only the standard library's NormalDist is needed. The formulas are the textbook ones:

* test statistic z = (p_B - p_A) / sqrt(p (1 - p) (1/n_A + 1/n_B)), p the pooled rate;
* users per variant to detect an absolute lift `effect` over a base rate p with a
  two-sided test at level alpha and the given power:
  n = (z_{1-alpha/2} sqrt(2 p̄ (1 - p̄)) + z_{power} sqrt(p1 (1 - p1) + p2 (1 - p2)))² / effect²
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from .progress import progress as progress_bar

_NORMAL = NormalDist()


@dataclass(frozen=True)
class ProportionTest:
    """The rates of A and B, the lift B - A with its 95 % interval, z and the two-sided p-value."""

    rate_a: float
    rate_b: float
    lift: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float

    def as_row(self) -> dict[str, float]:
        return {name: round(value, 4) for name, value in vars(self).items()}


def _check_counts(successes: int, users: int, name: str) -> None:
    if users <= 0:
        raise ValueError(f"variant {name} has {users} users; a test needs at least one user per variant")
    if not 0 <= successes <= users:
        raise ValueError(f"variant {name} has {successes} successes out of {users} users; "
                         "successes must be between 0 and the number of users")


def two_proportion_test(successes_a: int, users_a: int, successes_b: int, users_b: int) -> ProportionTest:
    """Two-sided z-test of "B's success rate differs from A's".

    Introduced in 09_ab_testing.
    """
    _check_counts(successes_a, users_a, "A")
    _check_counts(successes_b, users_b, "B")
    rate_a, rate_b = successes_a / users_a, successes_b / users_b
    pooled = (successes_a + successes_b) / (users_a + users_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / users_a + 1 / users_b))
    lift = rate_b - rate_a
    z = lift / se_pooled if se_pooled > 0 else 0.0
    p_value = 2 * (1 - _NORMAL.cdf(abs(z)))
    se = math.sqrt(rate_a * (1 - rate_a) / users_a + rate_b * (1 - rate_b) / users_b)
    margin = _NORMAL.inv_cdf(0.975) * se
    return ProportionTest(rate_a, rate_b, lift, lift - margin, lift + margin, z, p_value)


def sample_size_per_variant(base_rate: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users needed in each variant to detect an absolute lift `effect` over `base_rate`.

    Introduced in 09_ab_testing.
    """
    if not 0 < base_rate < 1 or not 0 < base_rate + effect < 1:
        raise ValueError(f"base_rate {base_rate} and base_rate + effect {base_rate + effect} must be in (0, 1)")
    if effect == 0:
        raise ValueError("effect must be non-zero: the smallest lift worth detecting, e.g. 0.02 for 2 points")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha ({alpha}) and power ({power}) must be in (0, 1)")
    p1, p2 = base_rate, base_rate + effect
    mean = (p1 + p2) / 2
    numerator = (_NORMAL.inv_cdf(1 - alpha / 2) * math.sqrt(2 * mean * (1 - mean))
                 + _NORMAL.inv_cdf(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(numerator / effect ** 2)


def simulate_outcomes(users: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Yes/no outcomes of `users` simulated users whose true success rate is `rate`.

    Introduced in 09_ab_testing.
    """
    return rng.random(users) < rate


def decide(result: ProportionTest, users_a: int, users_b: int, needed: int, alpha: float = 0.05) -> str:
    """The decision rule: wait for the planned sample, then ship B only on a significant lift.

    Returns "keep collecting" (fewer users than planned), "ship B" (significant lift
    > 0), "keep A" (significant drop) or "no difference" (keep A, the safe default).

    Introduced in 09_ab_testing.
    """
    if min(users_a, users_b) < needed:
        return "keep collecting"
    if result.p_value >= alpha:
        return "no difference"
    return "ship B" if result.lift > 0 else "keep A"


def rejection_rate(rate_a: float, rate_b: float, users: int, experiments: int = 500, alpha: float = 0.05,
                   seed: int = 0, progress: bool = False) -> float:
    """Share of simulated experiments in which the test says "different" at level alpha.

    With rate_a == rate_b this is the false-positive rate (should be about alpha);
    with a real difference it is the power.

    Introduced in 09_ab_testing.
    """
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in progress_bar(range(experiments), desc=f"{experiments} simulated experiments", enabled=progress):
        a = int(simulate_outcomes(users, rate_a, rng).sum())
        b = int(simulate_outcomes(users, rate_b, rng).sum())
        rejected += two_proportion_test(a, users, b, users).p_value < alpha
    return rejected / experiments
