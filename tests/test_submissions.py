"""Grading a learner's notebook without trusting it, and the instructor's grade-submissions command."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from course_utils.machinery.grade import restored, rubric_for, score_against_key, scored, solution_for
from course_utils.machinery.grading import Rubric
from course_utils.machinery.grading import Verdict
from course_utils.machinery.notebook_store import write
from course_utils.machinery.release import SOLUTIONS_DIR, student_copy

EX08 = SOLUTIONS_DIR / "ex08_ab_decision.ipynb"
FAKE = 'print("✅ 8.1 [2/2] fake"); print("✅ 8.2 [99/99] fake")\n'


def solution() -> nbformat.NotebookNode:
    return nbformat.read(EX08, as_version=4)


def student() -> nbformat.NotebookNode:
    return student_copy(solution())


def cell(notebook: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return next(c for c in notebook.cells if c.id == cell_id)


# ----- rebuilding a notebook (no kernel) ----------------------------------------------------
def test_the_reference_solution_is_rebuilt_unchanged_and_a_student_copy_stays_a_stub():
    rebuilt, notes = restored(solution(), solution())
    assert [c.source for c in rebuilt.cells] == [c.source for c in solution().cells] and notes == []
    rebuilt, notes = restored(student(), solution())
    assert "raise NotImplementedError()" in cell(rebuilt, "c003").source and notes == []


def test_an_edited_grader_cell_runs_as_the_exercise_has_it():
    tampered = solution()
    cell(tampered, "c005").source = FAKE
    rebuilt, notes = restored(tampered, solution())
    assert cell(rebuilt, "c005").source == cell(solution(), "c005").source
    assert notes == ["cell 6 is not an answer cell; your edits to it were set aside (it ran as the exercise has it)"]


def test_added_cells_do_not_run_and_code_reaching_for_the_grader_is_flagged():
    tampered = solution()
    tampered.cells.append(nbformat.v4.new_code_cell(FAKE))
    cell(tampered, "c003").source += "\nimport course_utils.machinery.grading as g\n"
    rebuilt, notes = restored(tampered, solution())
    assert len(rebuilt.cells) == len(solution().cells) and FAKE not in [c.source for c in rebuilt.cells]
    assert any("1 code cell(s) you added did not run" in n for n in notes)
    assert any(n.startswith("REVIEW: answer cell 4 reaches into the grading machinery") for n in notes)


def test_only_the_exercises_own_checks_count_with_their_own_points():
    rubric = rubric_for(EX08)
    forged = [Verdict("8.1", 99, True, "forged"), Verdict("9.9", 50, True, "no such check")]
    verdicts = score_against_key(EX08, forged)
    assert [v.check_id for v in verdicts] == list(rubric.points) and sum(v.points for v in verdicts) == 12
    assert verdicts[0].points == rubric.points["8.1"] and verdicts[0].passed
    assert all(not v.passed and v.reason.startswith("not run") and v.description for v in verdicts[1:])


def test_an_optional_check_counts_only_where_it_ran():
    rubric = Rubric({"1.1": 2, "1.2": 3}, optional={"1.2"})
    assert [v.check_id for v in scored(rubric, {"1.1": "works"}, [])] == ["1.1"]
    ran = scored(rubric, {}, [Verdict("1.2", 3, True, "on a GPU")])
    assert [(v.check_id, v.points, v.passed) for v in ran] == [("1.1", 2, False), ("1.2", 3, True)]


def test_a_notebook_is_matched_to_its_exercise_by_name():
    assert solution_for(Path("ex08_ab_decision-Copy1.ipynb")) == EX08
    with pytest.raises(ValueError, match="not an exercise notebook"):
        solution_for(Path("homework.ipynb"))


# ----- the instructor's command, on real kernels ---------------------------------------------
@pytest.mark.slow
def test_grade_submissions_scores_each_learner_and_survives_a_hanging_notebook(tmp_path):
    from course_utils.machinery.submissions import grade_submissions

    folder = tmp_path / "submissions"
    for learner in ("ada", "ben", "cy", "dee"):
        (folder / learner).mkdir(parents=True)
    shutil.copy(EX08, folder / "ada" / EX08.name)                        # the reference answer
    write(student(), folder / "ada" / "ex08_ab_decision-Copy1.ipynb")     # and a JupyterLab duplicate of a stub
    write(student(), folder / "ben" / EX08.name)                          # handed in untouched
    write(student(), folder / "ben" / "homework.ipynb")                   # names no exercise
    tampered = student()
    cell(tampered, "c005").source = FAKE                                  # a grader cell that prints ✅
    cell(tampered, "c003").source = cell(tampered, "c003").source.replace(
        "raise NotImplementedError()", FAKE.replace("\n", "; ") + "raise NotImplementedError()")
    write(tampered, folder / "cy" / EX08.name)
    hanging = solution()
    cell(hanging, "c004").source = "import time\ntime.sleep(3600)\n"      # not an answer cell: restored
    cell(hanging, "c007").source += "\n\nimport time\ntime.sleep(3600)\n"  # part 2's answer cell never ends
    write(hanging, folder / "dee" / EX08.name)

    graded = grade_submissions(folder, tmp_path / "out", jobs=2, timeout_s=25, show_progress=False)
    by_learner = {g.learner: g for g in graded}
    assert {k: (g.score.score, g.score.points, g.score.status) for k, g in by_learner.items()} == {
        "ada": (12, 12, "graded"), "ben": (0, 12, "graded"), "cy": (0, 12, "graded"), "dee": (6, 12, "timeout")}
    assert any("set aside" in n for n in by_learner["cy"].score.notes)
    rows = list(csv.DictReader(open(tmp_path / "out" / "gradebook.csv", encoding="utf-8")))
    assert [(r["learner"], r["score"], r["status"]) for r in rows] == [
        ("ada", "12", "graded"), ("ben", "0", "graded"), ("cy", "0", "graded"), ("dee", "6", "timeout")]
    feedback = (tmp_path / "out" / "feedback" / "ben.md").read_text(encoding="utf-8")
    assert "## ex08_ab_decision: 0/12 (graded)" in feedback and "not implemented yet" in feedback
    assert "time limit of 25 s" in (tmp_path / "out" / "feedback" / "dee.md").read_text(encoding="utf-8")
    assert "homework.ipynb was not graded" in feedback
    assert "ex08_ab_decision-Copy1.ipynb was not graded" in (tmp_path / "out" / "feedback" / "ada.md").read_text()
