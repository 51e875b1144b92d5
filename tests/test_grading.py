import pytest

from course_utils.paths import REPO_ROOT
from course_utils.machinery.grading import Check, Fail, parse_verdicts, run_checks


def test_verdict_lines_round_trip_and_dependencies_skip(capsys):
    def broken():
        raise NotImplementedError()

    def wrong():
        raise Fail("expected 400, got 503\n(with a second line)")

    verdicts = run_checks([Check("1.1", 2, "works", lambda: None), Check("1.2", 1, "stub", broken),
                           Check("1.3", 3, "wrong", wrong), Check("1.4", 1, "needs 1.3", lambda: None, ("1.3",)),
                           Check("1.5", 1, "crash", lambda: 1 / 0)])
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "✅ 1.1 [2/2] works"
    assert "not implemented yet" in printed and "skipped: needs check 1.3" in printed
    assert "your code raised ZeroDivisionError" in printed
    assert "expected 400, got 503 (with a second line)" in printed  # one line per verdict
    assert printed.splitlines()[-1] == "Score: 2/8"
    assert parse_verdicts(printed) == verdicts


def test_the_grade_command_names_the_next_exercise_to_do():
    from course_utils.machinery.grade import ExerciseScore, next_step
    from course_utils.machinery.grading import Verdict

    done = ExerciseScore("ex01_custom_handler", [Verdict("1.1", 2, True, "ok")])
    half = ExerciseScore("ex02_deploy_image_classifier", [Verdict("2.1", 2, True, "a"), Verdict("2.2", 3, False, "b")])
    assert next_step([half, done]).startswith("Next: ex02_deploy_image_classifier (2/5 points). Open exercises/")
    assert next_step([done]).startswith("All graded exercises have full marks")


def test_requires_holds_across_grader_cells_and_the_graders_own_failure_is_named_as_such(capsys):
    import functools

    from course_utils.servers.ports import wait_until

    def wrong():
        raise Fail("no")

    run_checks([Check("7.91", 1, "first cell", wrong)], show=False)
    later = run_checks([Check("7.92", 1, "second cell", lambda: None, ("7.91",)),
                        Check("7.93", 1, "never run", lambda: None, ("7.99",))], show=False)
    assert [v.reason for v in later] == ["skipped: needs check 7.91 to pass first",
                                         "skipped: needs check 7.99 to pass first (run its grader cell first)"]
    grader_bug = run_checks([Check("7.94", 1, "grader", functools.partial(wait_until, lambda: None, 0, "x"))],
                            show=False)[0]
    assert grader_bug.reason.startswith("the check stopped with TimeoutError: Timed out after 0 s waiting for x")
    assert "not in a line of yours" in grader_bug.reason


@pytest.mark.parametrize("solution", sorted((REPO_ROOT / "solutions").glob("ex*.ipynb")), ids=lambda p: p.stem)
def test_the_rubric_and_the_reference_solutions_stored_verdicts_agree(solution):
    """Points are declared once, in the checks module's RUBRIC; the stored solution must show the same checks."""
    from course_utils.machinery.grade import rubric_for, stored_verdicts

    rubric, stored = rubric_for(solution), stored_verdicts(solution)
    expected = {c: p for c, p in rubric.points.items() if c not in rubric.optional or c in stored}
    assert {c: v.points for c, v in stored.items()} == expected, (
        f"course_utils/checks/{solution.stem}.py's RUBRIC and the verdicts stored in {solution.name} differ: "
        f"re-execute it (python -m course_utils execute {solution.relative_to(REPO_ROOT)})")
    assert all(v.passed for v in stored.values()), [v.line() for v in stored.values() if not v.passed]


def test_a_check_outside_the_rubric_is_refused():
    from course_utils.machinery.grading import Rubric

    with pytest.raises(KeyError, match="give it points there"):
        Rubric({"1.1": 2}).check("1.2", "not declared", lambda: None)
    with pytest.raises(ValueError, match="have no points"):
        Rubric({"1.1": 2}, optional={"1.2"})
