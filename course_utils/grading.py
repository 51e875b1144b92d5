"""Self-grading for the exercises: checks, verdict lines and scores.

A grader cell runs a list of checks. Each check is a function that returns
normally when the learner's work is right and raises `Fail("what is wrong — hint")`
when it is not. Every check prints exactly one stable line, which nbval compares
and the grade command adds up:

    ✅ 1.1 [2/2] a valid CSV row gets HTTP 200 and the model's prediction
    ❌ 1.3 [0/2] a row with 3 fields gets HTTP 400 — expected HTTP 400, got 503: ...

Graders test behaviour (live requests, files, measured numbers), never the text of
the learner's code, so a correct answer written differently passes.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from typing import Callable, Iterable

PASS, FAIL = "✅", "❌"
VERDICT_LINE = re.compile(rf"^({PASS}|{FAIL}) (\S+) \[(\d+)/(\d+)\] (.*)$")


class Fail(Exception):
    """Raised by a check: the message tells the learner what is wrong and how to fix it."""


@dataclass(frozen=True)
class Check:
    """One graded check: an id like "1.2", its points, what it verifies, and the test."""

    check_id: str
    points: int
    description: str
    test: Callable[[], None]
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check."""

    check_id: str
    points: int
    passed: bool
    description: str
    reason: str = ""

    @property
    def score(self) -> int:
        return self.points if self.passed else 0

    def line(self) -> str:
        """The one line a grader cell prints for this check."""
        text = f"{PASS if self.passed else FAIL} {self.check_id} [{self.score}/{self.points}] {self.description}"
        return text if self.passed else f"{text} — {self.reason}"


def _explain(err: BaseException) -> str:
    """Turn an exception from the learner's code into a short, actionable sentence."""
    if isinstance(err, Fail):
        return str(err)
    if isinstance(err, NotImplementedError):
        return "not implemented yet: replace `raise NotImplementedError()` with your code"
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    place = f" (in {where.name}, line {where.lineno})" if where else ""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"your code raised {type(err).__name__}{place}: {message}".rstrip(": ")


def _run_check(check: Check, failed: set[str]) -> Verdict:
    """Run one check; a check whose prerequisite failed is not run and fails with that reason."""
    blocked = [c for c in check.requires if c in failed]
    if blocked:
        return Verdict(check.check_id, check.points, False, check.description,
                       f"skipped: needs check {', '.join(blocked)} to pass first")
    try:
        check.test()
    except Exception as err:  # the learner's code may raise anything
        reason = " ".join(_explain(err).split())  # one verdict, one line
        return Verdict(check.check_id, check.points, False, check.description, reason)
    return Verdict(check.check_id, check.points, True, check.description)


def run_checks(checks: Iterable[Check], show: bool = True) -> list[Verdict]:
    """Run checks in order, print one verdict line each and a total; return the verdicts.

    Introduced in ex01_custom_handler.
    """
    verdicts: list[Verdict] = []
    failed: set[str] = set()
    for check in checks:
        verdict = _run_check(check, failed)
        if not verdict.passed:
            failed.add(check.check_id)
        verdicts.append(verdict)
        if show:
            print(verdict.line(), flush=True)
    if show:
        print(f"Score: {sum(v.score for v in verdicts)}/{sum(v.points for v in verdicts)}")
    return verdicts


def run_checks_then_stop(checks: Iterable[Check], state: dict, show: bool = True) -> list[Verdict]:
    """run_checks(), then stop the server a check left in state["server"], whatever happened.

    Introduced in ex01_custom_handler.
    """
    try:
        return run_checks(checks, show=show)
    finally:
        if "server" in state:
            state["server"].stop()


def expect(condition: bool, message: str) -> None:
    """Raise Fail(message) unless condition holds (a readable assert for checks).

    Introduced in ex01_custom_handler.
    """
    if not condition:
        raise Fail(message)


def parse_verdicts(text: str) -> list[Verdict]:
    """Read verdict lines back from printed output (used by the grade command and tests).

    Introduced in ex01_custom_handler.
    """
    verdicts = []
    for line in text.splitlines():
        match = VERDICT_LINE.match(line.strip())
        if match:
            mark, check_id, score, points, rest = match.groups()
            description, _, reason = rest.partition(" — ")
            verdicts.append(Verdict(check_id, int(points), mark == PASS, description, reason))
    return verdicts
