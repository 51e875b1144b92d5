"""The A/B router and the decision statistics: assignment, split, bad input, broken servers,
and the test's known numbers."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_utils.ab_stats import (decide, rejection_rate, sample_size_per_variant, two_proportion_test)
from course_utils.benchmark import configuration_numbers, run_in_process
from course_utils.servers.ports import free_ports
from course_utils.routing import ABRouter, Endpoint, assign_variant, bucket, check_split

USERS = [f"u{i}" for i in range(20_000)]


def test_bucket_is_deterministic_uniform_and_salted_by_experiment():
    assert bucket("alice", "e1") == bucket("alice", "e1")
    assert bucket("alice", "e1") != bucket("alice", "e2")
    points = np.array([bucket(u, "e1") for u in USERS])
    assert points.min() >= 0 and points.max() < 1
    assert abs(points.mean() - 0.5) < 0.01
    with pytest.raises(ValueError, match="non-empty string"):
        bucket("", "e1")


@pytest.mark.parametrize("share", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_the_split_holds_within_four_standard_deviations(share):
    observed = np.mean([assign_variant(u, {"A": 1 - share, "B": share}, "e") == "B" for u in USERS])
    assert abs(observed - share) <= 4 * math.sqrt(share * (1 - share) / len(USERS))


def test_a_canary_step_never_moves_users_back_to_a():
    small = [assign_variant(u, {"A": 0.95, "B": 0.05}, "e") for u in USERS]
    large = [assign_variant(u, {"A": 0.6, "B": 0.4}, "e") for u in USERS]
    assert not any(a == "B" and b == "A" for a, b in zip(small, large))


@pytest.mark.parametrize("split, message", [({}, "split is empty"),
                                            ({"A": 0.5, "C": 0.5}, r"unknown variant\(s\) \['C'\]"),
                                            ({"A": 1.5, "B": -0.5}, r"must be a number in \[0, 1\]"),
                                            ({"A": float("nan"), "B": 1.0}, r"must be a number in \[0, 1\]"),
                                            ({"A": 0.5, "B": 0.6}, "add up to 1.1")])
def test_bad_splits_are_refused_with_what_to_fix(split, message):
    with pytest.raises(ValueError, match=message):
        check_split(split, ["A", "B"])


def test_a_router_refuses_bad_set_up_and_keeps_its_old_split():
    endpoints = {"A": Endpoint("http://127.0.0.1:9/a"), "B": Endpoint("http://127.0.0.1:9/b")}
    with pytest.raises(ValueError, match="unknown shadow variant"):
        ABRouter(endpoints, {"A": 1.0}, "e", shadow="C")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        ABRouter(endpoints, {"A": 1.0}, "e", timeout_s=0)
    router = ABRouter(endpoints, {"A": 0.5, "B": 0.5}, "e")
    with pytest.raises(ValueError, match="unknown variant"):
        router.set_split({"A": 0.5, "Z": 0.5})
    assert router.split == {"A": 0.5, "B": 0.5}
    with pytest.raises(ValueError, match="unknown variant 'Z'"):
        router.predict("u1", {}, variant="Z")
    with pytest.raises(ValueError, match="never got a prediction"):
        router.record_outcome("nobody", True)
    router.close()


def test_a_server_that_is_down_is_counted_and_no_record_is_lost():
    port = free_ports(1)[0]  # nothing listens there: a real refused connection
    endpoints = {"A": Endpoint(f"http://127.0.0.1:{port}/a"), "B": Endpoint(f"http://127.0.0.1:{port}/b")}
    with ABRouter(endpoints, {"A": 0.5, "B": 0.5}, "e", timeout_s=2, shadow="B") as router:
        records = [router.predict(u, {"data": [1]}) for u in USERS[:40]]
        for record in records:
            router.record_outcome(record.key, False)
        summary = router.summary().set_index("variant")
    assert len(records) == 40 and all(not r.ok and "connection refused" in r.error for r in records)
    assert summary.loc["A", "requests"] + summary.loc["B", "requests"] == 40
    assert summary.loc["A", "errors"] + summary.loc["B", "errors"] == 40
    assert summary.loc["B (shadow)", "requests"] == summary.loc["A", "requests"]  # copies of A's traffic
    assert summary.loc["A", "users"] + summary.loc["B", "users"] == 40


def test_two_proportion_test_matches_a_hand_computation():
    result = two_proportion_test(200, 1000, 240, 1000)
    pooled = 440 / 2000
    z = 0.04 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.ci_low < 0.04 < result.ci_high
    with pytest.raises(ValueError, match="successes must be between 0"):
        two_proportion_test(11, 10, 1, 10)
    with pytest.raises(ValueError, match="at least one user"):
        two_proportion_test(0, 0, 1, 10)


def test_sample_size_matches_the_textbook_value_and_rejects_nonsense():
    assert 1670 <= sample_size_per_variant(0.20, 0.04) <= 1700   # standard tables: about 1680
    with pytest.raises(ValueError, match="effect must be non-zero"):
        sample_size_per_variant(0.2, 0.0)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        sample_size_per_variant(0.99, 0.05)


def test_decision_rule_and_measured_error_rates():
    assert decide(two_proportion_test(20, 100, 40, 100), 100, 100, 500) == "keep collecting"
    assert decide(two_proportion_test(200, 1000, 300, 1000), 1000, 1000, 500) == "ship B"
    assert decide(two_proportion_test(300, 1000, 200, 1000), 1000, 1000, 500) == "keep A"
    assert decide(two_proportion_test(200, 1000, 205, 1000), 1000, 1000, 500) == "no difference"
    assert rejection_rate(0.2, 0.2, 1000, experiments=400, seed=3) <= 0.09
    assert rejection_rate(0.2, 0.24, sample_size_per_variant(0.2, 0.04), experiments=200, seed=4) >= 0.7


def test_in_process_rows_have_perf_analyzer_columns_and_ratios_use_the_reference():
    table = run_in_process("noop", lambda: None, (1, 2), calls_per_level=200, warmup=5)
    assert list(table["concurrency"]) == [1, 2] and (table["throughput"] > 0).all()
    assert {"setup", "p50_ms", "p99_ms", "stable"} <= set(table.columns)
    served = pd.DataFrame({"setup": ["server"] * 2, "concurrency": [1, 2], "throughput": [100.0, 150.0],
                           "p50_ms": [table["p50_ms"].iloc[0] * 10, 1.0], "p99_ms": [2.0, 3.0], "stable": [True, False]})
    numbers = configuration_numbers(pd.concat([table, served]), {"server": "noop"}).set_index("setup")
    assert numbers.loc["server", "latency_x"] == pytest.approx(10)
    assert numbers.loc["server", "at_concurrency"] == 2 and not numbers.loc["server", "all_stable"]
    with pytest.raises(ValueError, match="not in the results"):
        configuration_numbers(served, {"server": "missing"})
