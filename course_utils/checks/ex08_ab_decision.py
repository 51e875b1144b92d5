"""Graders for ex08_ab_decision: sticky routing with a split, and the decision rule.

Everything is checked on simulated users whose true answer is known, so the grade
does not depend on a server or on luck: the simulations are seeded, and the
tolerances are several standard deviations wide.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Callable

import cloudpickle
import numpy as np

from ..ab_stats import sample_size_per_variant, simulate_outcomes
from ..machinery.grading import Fail, Rubric, Verdict, expect, run_checks

USERS = [f"user-{i:05d}" for i in range(20_000)]
BASE_RATE, LIFT = 0.20, 0.04
ALPHA = 0.05
FALSE_POSITIVE_CEILING = 0.09   # alpha 0.05 plus 4 standard deviations of 400 simulated experiments
POWER_FLOOR = 0.65              # planned power 0.8 minus about 4 standard deviations of 200 experiments

Assign = Callable[[str, float, str], str]
Decide = Callable[[int, int, int, int, int, float], str]

# check id -> points: the answer key
RUBRIC = Rubric({"8.1": 1, "8.2": 2, "8.3": 1, "8.4": 1, "8.5": 1,
                 "8.6": 2, "8.7": 1, "8.8": 2, "8.9": 1})


def _share_b(assign: Assign, share: float, experiment: str = "grading") -> tuple[list[str], float]:
    answers = [assign(user, share, experiment) for user in USERS]
    bad = sorted({a for a in answers} - {"A", "B"})
    expect(not bad, f"assign must return 'A' or 'B', got {bad[:3]}")
    return answers, answers.count("B") / len(answers)


def _raises_value_error(assign: Assign, share: float) -> bool:
    try:
        assign("user-1", share, "grading")
    except ValueError:
        return True
    return False


def _in_another_process(assign: Assign, users: list[str]) -> list[str]:
    """assign(user, 0.5, "grading") for each user, computed in a fresh Python process (its own hash seed)."""
    program = ("import json, sys, cloudpickle\n"
               "assign, users = cloudpickle.loads(sys.stdin.buffer.read())\n"
               "print(json.dumps([assign(user, 0.5, 'grading') for user in users]))")
    done = subprocess.run([sys.executable, "-c", program], input=cloudpickle.dumps((assign, users)),
                          capture_output=True, timeout=120, env={"PYTHONHASHSEED": "random", "PATH": ""})
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise Fail(f"assign could not run in a fresh Python process ({last[0][:200]}); define everything it "
                   "needs (imports, helpers) in the notebook")
    return json.loads(done.stdout)


def assign_checks(assign: Assign) -> list[Check]:
    """The routing checks (8.1-8.5) for assign(user_id, share_b, experiment) -> "A" | "B".

    Internal helper: no lesson calls it.
    """
    def sticky() -> None:
        first = [assign(user, 0.5, "grading") for user in USERS[:2000]]
        again = [assign(user, 0.5, "grading") for user in reversed(USERS[:2000])][::-1]
        changed = sum(a != b for a, b in zip(first, again))
        expect(changed == 0, f"{changed} of 2000 users changed variant between two calls; "
                             "derive the variant from a hash of (experiment, user_id), not from random()")
        elsewhere = _in_another_process(assign, USERS[:2000])
        changed = sum(a != b for a, b in zip(first, elsewhere))
        expect(changed == 0, f"{changed} of 2000 users got another variant in another Python process (another "
                             "router replica, or after a restart); Python's hash() of a str changes in every "
                             "process: use hashlib.sha256")

    def split_holds() -> None:
        for share in (0.1, 0.5, 0.9):
            observed = _share_b(assign, share)[1]
            tolerance = 4 * math.sqrt(share * (1 - share) / len(USERS))
            expect(abs(observed - share) <= tolerance,
                   f"with share_b={share}, {observed:.3f} of 20000 users got B; expected {share} ± {tolerance:.3f}")

    def edges() -> None:
        expect(_share_b(assign, 0.0)[1] == 0.0, "share_b=0 must send every user to A")
        expect(_share_b(assign, 1.0)[1] == 1.0, "share_b=1 must send every user to B")
        accepted = [bad for bad in (-0.1, 1.5) if not _raises_value_error(assign, bad)]
        expect(not accepted, f"share_b={accepted[0] if accepted else ''} was accepted; "
                             "raise ValueError for a share outside [0, 1]")

    def canary_only_adds() -> None:
        before = _share_b(assign, 0.1)[0]
        after = _share_b(assign, 0.3)[0]
        moved_back = sum(a == "B" and b == "A" for a, b in zip(before, after))
        expect(moved_back == 0, f"raising share_b from 0.1 to 0.3 moved {moved_back} users from B back to A; "
                                "give B the top slice of [0, 1): B when bucket >= 1 - share_b")

    def experiments_independent() -> None:
        first = _share_b(assign, 0.5, "experiment-1")[0]
        second = _share_b(assign, 0.5, "experiment-2")[0]
        agreement = sum(a == b for a, b in zip(first, second)) / len(first)
        expect(abs(agreement - 0.5) < 0.03, f"two experiments put {agreement:.1%} of users in the same variant "
                                            "(independent experiments: about 50 %); hash the experiment name too")

    return [RUBRIC.check("8.1", "the same user always gets the same variant, also in another process", sticky),
            RUBRIC.check("8.2", "the split holds within 4 standard deviations for share_b 0.1, 0.5, 0.9", split_holds, ("8.1",)),
            RUBRIC.check("8.3", "share_b 0 and 1 are all-A and all-B; a share outside [0, 1] raises ValueError", edges, ("8.1",)),
            RUBRIC.check("8.4", "raising the canary's share never moves a user from B back to A", canary_only_adds, ("8.2",)),
            RUBRIC.check("8.5", "different experiments assign users independently", experiments_independent, ("8.2",))]


def _experiment(decide: Decide, rate_a: float, rate_b: float, users: int, needed: int,
                rng: np.random.Generator) -> str:
    a = int(simulate_outcomes(users, rate_a, rng).sum())
    b = int(simulate_outcomes(users, rate_b, rng).sum())
    return decide(a, users, b, users, needed, ALPHA)


def decide_checks(decide: Decide) -> list[Check]:
    """The decision checks (8.6-8.9) for decide(successes_a, users_a, successes_b, users_b, needed, alpha).

    Internal helper: no lesson calls it.
    """
    needed = sample_size_per_variant(BASE_RATE, LIFT, ALPHA, 0.8)
    allowed = {"ship B", "keep A", "no difference", "keep collecting"}

    def known_cases() -> None:
        cases = [((200, 1000, 300, 1000, 500), "ship B", "B converts 30 % vs A's 20 % on 1000 users each"),
                 ((300, 1000, 200, 1000, 500), "keep A", "B converts 20 % vs A's 30 %"),
                 ((200, 1000, 202, 1000, 500), "no difference", "20.0 % vs 20.2 %"),
                 ((20, 100, 40, 100, 500), "keep collecting", "100 users per variant of the 500 planned"),
                 ((100, 499, 150, 500, 500), "keep collecting", "A has 499 users of the 500 planned (B has 500)"),
                 ((100, 500, 150, 499, 500), "keep collecting", "B has 499 users of the 500 planned (A has 500)"),
                 ((100, 500, 150, 500, 500), "ship B", "exactly the 500 planned users each, 20 % vs 30 %"),
                 ((150, 500, 100, 500, 500), "keep A", "exactly the 500 planned users each, 30 % vs 20 %"),
                 ((200, 1000, 238, 1000, 500), "ship B", "20.0 % vs 23.8 % (two-sided p = 0.040, just under alpha)"),
                 ((200, 1000, 235, 1000, 500), "no difference", "20.0 % vs 23.5 % (two-sided p = 0.058, just over "
                                                                "alpha; a one-sided test would say 0.029)"),
                 ((200, 1000, 164, 1000, 500), "keep A", "20.0 % vs 16.4 % (two-sided p = 0.037)")]
        for args, expected, story in cases:
            answer = decide(*args, ALPHA)
            expect(answer in allowed, f"decide must return one of {sorted(allowed)}, got {answer!r}")
            expect(answer == expected, f"{story}: expected {expected!r}, got {answer!r}")

    def finds_the_known_lift() -> None:
        rng = np.random.default_rng(8)
        answers = [_experiment(decide, BASE_RATE, BASE_RATE + 0.08, needed, needed, rng) for _ in range(20)]
        shipped = answers.count("ship B")
        expect(shipped >= 19, f"B is truly 8 points better, yet only {shipped} of 20 simulated experiments "
                              "said 'ship B'; test the lift with a two-proportion z-test")

    def few_false_positives() -> None:
        rng = np.random.default_rng(9)
        answers = [_experiment(decide, BASE_RATE, BASE_RATE, needed, needed, rng) for _ in range(400)]
        rate = sum(a in ("ship B", "keep A") for a in answers) / len(answers)
        expect(rate <= FALSE_POSITIVE_CEILING,
               f"A and B are identical, yet {rate:.1%} of 400 experiments declared a winner; at alpha={ALPHA} "
               f"expect about {ALPHA:.0%}: decide on p-value < alpha, not on 'B looks higher'")

    def enough_power() -> None:
        rng = np.random.default_rng(10)
        answers = [_experiment(decide, BASE_RATE, BASE_RATE + LIFT, needed, needed, rng) for _ in range(200)]
        power = answers.count("ship B") / len(answers)
        expect(power >= POWER_FLOOR, f"with the planned {needed} users per variant and a true lift of {LIFT}, "
                                     f"only {power:.1%} of experiments shipped B; expected about 80 %")

    return [RUBRIC.check("8.6", "decisions on known cases, on both sides of the planned size and of alpha", known_cases),
            RUBRIC.check("8.7", "finds a large known lift in at least 19 of 20 simulated experiments", finds_the_known_lift, ("8.6",)),
            RUBRIC.check("8.8", f"A/A experiments declare a winner at most {FALSE_POSITIVE_CEILING:.0%} of the time",
                         few_false_positives, ("8.6",)),
            RUBRIC.check("8.9", f"detects the planned lift of {LIFT} in at least {POWER_FLOOR:.0%} of experiments",
                         enough_power, ("8.6",))]


def grade_assign(assign: Assign, show: bool = True) -> list[Verdict]:
    """Grade the sticky router.

    Introduced in ex08_ab_decision.
    """
    return run_checks(assign_checks(assign), show=show)


def grade_decide(decide: Decide, show: bool = True) -> list[Verdict]:
    """Grade the decision rule.

    Introduced in ex08_ab_decision.
    """
    return run_checks(decide_checks(decide), show=show)
