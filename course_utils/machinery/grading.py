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

import json
import os
import re
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

PACKAGE_DIR = Path(__file__).resolve().parents[1]   # course_utils/: the grader's own code
PASS, FAIL = "✅", "❌"
# Set by the grade commands: run_checks() also records each verdict there (JSON lines), and the
# score is read from that record, never from what a notebook printed.
VERDICTS_FILE_ENV = "COURSE_VERDICTS_FILE"
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
class Rubric:
    """An exercise's answer key, declared at the top of its checks module: each check's points, and which are optional.

    It is the one place points are declared. The grade commands score against it (a check that did not
    run scores 0; an optional check, one that runs only on some machines such as a GPU, counts only
    where it ran). The reference solution's stored verdict lines must agree with it:
    tests/test_grading.py fails until the solution is re-executed after a change here.
    """

    points: Mapping[str, int]
    optional: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "optional", frozenset(self.optional))
        unknown = self.optional - set(self.points)
        if unknown:
            raise ValueError(f"optional checks {sorted(unknown)} have no points in the rubric")

    def check(self, check_id: str, description: str, test: Callable[[], None],
              requires: tuple[str, ...] = ()) -> Check:
        """The Check `check_id`, worth the points this rubric gives it.

        Internal helper: no lesson calls it.
        """
        if check_id not in self.points:
            raise KeyError(f"check {check_id} is not in the rubric {sorted(self.points)}: give it points there")
        return Check(check_id, self.points[check_id], description, test, tuple(requires))


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


def _learner_frame(err: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is the learner's code (a notebook cell or their file)."""
    library = (str(PACKAGE_DIR), sys.prefix, sys.base_prefix, "<frozen")
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    mine = [f for f in frames if not f.filename.startswith(library)]
    return mine[-1] if mine else None


def _explain(err: BaseException) -> str:
    """Turn an exception raised during a check into a short, actionable sentence.

    An exception that passed through the learner's code is reported as theirs, at their line; one
    raised in the grader's or a library's code says so, without blaming either side.
    """
    if isinstance(err, Fail):
        return str(err)
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, NotImplementedError) and not message:
        return "not implemented yet: replace `raise NotImplementedError()` with your code"
    where = _learner_frame(err)
    if where is None:   # raised in the grader's or a library's code: maybe by what your code returned or served
        return (f"the check stopped with {type(err).__name__}: {message[:200]} (in the grader's code, not in a "
                "line of yours: check what your code returns or serves; if it looks right, run the grader cell "
                "again, and tell your instructor if it repeats)")
    return f"your code raised {type(err).__name__} (in {where.name}, line {where.lineno}): {message}".rstrip(": ")


# Outcomes of every check run in this kernel, so that `requires` also holds across grader cells.
_OUTCOMES: dict[str, bool] = {}


def _run_check(check: Check) -> Verdict:
    """Run one check; a check whose prerequisite has not passed (in any grader cell) is not run and fails."""
    blocked = [c for c in check.requires if not _OUTCOMES.get(c, False)]
    if blocked:
        unrun = " (run its grader cell first)" if any(c not in _OUTCOMES for c in blocked) else ""
        return Verdict(check.check_id, check.points, False, check.description,
                       f"skipped: needs check {', '.join(blocked)} to pass first{unrun}")
    try:
        check.test()
    except Exception as err:  # the learner's code may raise anything
        reason = " ".join(_explain(err).split())  # one verdict, one line
        return Verdict(check.check_id, check.points, False, check.description, reason)
    return Verdict(check.check_id, check.points, True, check.description)


def run_checks(checks: Iterable[Check], show: bool = True) -> list[Verdict]:
    """Run checks in order, print one verdict line each and a total; return the verdicts.

    Internal helper: no lesson calls it.
    """
    verdicts: list[Verdict] = []
    for check in checks:
        verdict = _run_check(check)
        _OUTCOMES[check.check_id] = verdict.passed
        verdicts.append(verdict)
        _record(verdict)
        if show:
            print(verdict.line(), flush=True)
    if show:
        print(f"Score: {sum(v.score for v in verdicts)}/{sum(v.points for v in verdicts)}")
    return verdicts


def _record(verdict: Verdict) -> None:
    """Append the verdict to the grade command's record, when a grade command runs this notebook."""
    path = os.environ.get(VERDICTS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as record:
            record.write(json.dumps(asdict(verdict)) + "\n")


def read_verdicts(path: str | os.PathLike) -> list[Verdict]:
    """The verdicts run_checks() recorded in a grade command's record file ([] if there is none).

    Internal helper: no lesson calls it.
    """
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return []
    return [Verdict(**json.loads(line)) for line in lines if line.strip()]


class GradingSession:
    """What the checks of one grader run share: the servers a check started, and what a check found.

    `serve(server)` starts a server and keeps it (`server` is the first one); `run(checks)` runs the checks
    and then stops those servers, the last started first, whatever happened. `found` holds what one check
    built for later ones (an exported file, a parsed config), by name.
    """

    def __init__(self) -> None:
        self.servers: list[Any] = []
        self.found: dict[str, Any] = {}

    @property
    def server(self) -> Any:
        """The first server a check started (None before that)."""
        return self.servers[0] if self.servers else None

    def serve(self, server: Any) -> Any:
        """Keep `server` (to be stopped after the checks) and start it; return it.

        Internal helper: no lesson calls it.
        """
        self.servers.append(server)
        return server.start()

    def run(self, checks: Iterable[Check], show: bool = True) -> list[Verdict]:
        """run_checks(), then stop the servers the checks started, whatever happened.

        Internal helper: no lesson calls it.
        """
        try:
            return run_checks(checks, show=show)
        finally:
            for server in reversed(self.servers):
                server.stop()


def expect(condition: bool, message: str) -> None:
    """Raise Fail(message) unless condition holds (a readable assert for checks).

    Internal helper: no lesson calls it.
    """
    if not condition:
        raise Fail(message)


def parse_verdicts(text: str) -> list[Verdict]:
    """Read verdict lines back from printed output (used by the grade command and tests).

    Internal helper: no lesson calls it.
    """
    verdicts = []
    for line in text.splitlines():
        match = VERDICT_LINE.match(line.strip())
        if match:
            mark, check_id, score, points, rest = match.groups()
            description, _, reason = rest.partition(" — ")
            verdicts.append(Verdict(check_id, int(points), mark == PASS, description, reason))
    return verdicts
