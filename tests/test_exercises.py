"""Exercise integrity: exercises/ is generated from solutions/, and an unmodified exercise fails every
grader. (Correct answers written differently, and wrong ones: tests/test_grader_fixtures.py.)"""

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from course_utils.machinery.notebook_runner import execute, is_grader_cell
from course_utils.machinery.grading import parse_verdicts
from course_utils.machinery.notebook_store import write
from course_utils.machinery.release import (EXERCISES_DIR, SOLUTIONS_DIR, has_local_changes, release, reset_exercise,
                                  stale_exercises, strip_solution_regions, student_copy)



def test_solution_regions_become_stubs_at_their_indentation():
    source = "def f():\n    x = 1\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert strip_solution_regions(source) == "def f():\n    x = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert strip_solution_regions("a\n### BEGIN SOLUTION\nb\n### END SOLUTION", markdown=True) == "a\nYOUR ANSWER HERE"


@pytest.mark.parametrize("source, problem", [("### BEGIN SOLUTION\nx", "never closed"),
                                             ("### END SOLUTION", "without a"),
                                             ("### BEGIN SOLUTION\n### BEGIN SOLUTION", "inside another")])
def test_broken_markers_are_reported(source, problem):
    with pytest.raises(ValueError, match=problem):
        strip_solution_regions(source)


def test_exercises_are_in_sync_with_solutions():
    """Judged against exercises/.released.json; in CI's clean clone the files themselves are compared too."""
    strict = bool(os.environ.get("CI"))
    assert stale_exercises(strict=strict) == [], "course authors: run `python -m course_utils release`, commit exercises/"


@pytest.fixture
def learner_checkout(tmp_path):
    """A copy of solutions/ and exercises/ in which a learner then answers ex01 (and commits it, maybe)."""
    root = tmp_path / "course"
    for folder in ("solutions", "exercises"):
        shutil.copytree(EXERCISES_DIR.parent / folder, root / folder)
    exercise = root / "exercises" / "ex01_custom_handler.ipynb"
    notebook = nbformat.read(exercise, as_version=4)
    notebook.cells[3].source = notebook.cells[3].source.replace("raise NotImplementedError()", "pass  # my answer")
    write(notebook, exercise)
    return root, exercise


def test_a_learners_edits_never_make_the_staleness_check_fail(learner_checkout):
    root, exercise = learner_checkout
    shutil.copy(exercise, exercise.with_name("ex01_custom_handler-Copy1.ipynb"))  # JupyterLab's "Duplicate"
    assert has_local_changes(exercise)
    assert stale_exercises(root / "solutions", root / "exercises") == []
    assert stale_exercises(root / "solutions", root / "exercises", strict=True) == [
        "ex01_custom_handler.ipynb: differs from the solution with regions stripped"]
    exercise.unlink()
    assert stale_exercises(root / "solutions", root / "exercises") == []


def test_a_changed_solution_without_a_release_is_stale(learner_checkout):
    root, _ = learner_checkout
    solution = root / "solutions" / "ex02_deploy_image_classifier.ipynb"
    notebook = nbformat.read(solution, as_version=4)
    notebook.cells[0].source += "\nOne more sentence."
    write(notebook, solution)
    assert stale_exercises(root / "solutions", root / "exercises") == [
        "ex02_deploy_image_classifier.ipynb: solutions/ changed since the last release"]
    written, kept = release(root / "solutions", root / "exercises")
    assert [p.name for p in written] == ["ex02_deploy_image_classifier.ipynb"] and [p.name for p in kept] == [
        "ex01_custom_handler.ipynb"]
    assert stale_exercises(root / "solutions", root / "exercises") == []


def test_release_keeps_an_edited_exercise_unless_forced(learner_checkout):
    root, exercise = learner_checkout
    answer = exercise.read_text()
    written, kept = release(root / "solutions", root / "exercises")
    assert (written, kept) == ([], [exercise]) and exercise.read_text() == answer
    written, kept = release(root / "solutions", root / "exercises", force=True)
    assert written == [exercise] and "my answer" not in exercise.read_text()


def test_reset_exercise_restores_one_exercise_and_keeps_a_backup(learner_checkout, monkeypatch):
    root, exercise = learner_checkout
    monkeypatch.setattr("course_utils.machinery.release.backup_dir", lambda: root / "exercise-backups")
    answer = exercise.read_text()
    target, backup = reset_exercise("ex01", root / "solutions", root / "exercises")
    assert target == exercise and not has_local_changes(exercise)
    assert backup.read_text() == answer and backup.parent == root / "exercise-backups"
    assert reset_exercise("ex01", root / "solutions", root / "exercises")[1] is None, "nothing to back up"
    write(nbformat.read(backup, as_version=4), exercise)
    second = reset_exercise("ex01", root / "solutions", root / "exercises")[1]
    assert second != backup and backup.read_text() == answer == second.read_text(), "a backup is never replaced"
    with pytest.raises(ValueError, match="choose one of: ex01, ex02"):
        reset_exercise("ex1", root / "solutions", root / "exercises")


def test_no_course_message_suggests_a_command_that_overwrites_answers():
    sources = [*(EXERCISES_DIR.parent / "course_utils").rglob("*.py"), EXERCISES_DIR.parent / "Makefile",
               EXERCISES_DIR.parent / "README.md",
               *(p for p in EXERCISES_DIR.parent.glob("tests/*.py") if p.name != Path(__file__).name)]
    for source in sources:
        text = source.read_text()
        for match in re.finditer(r"release --force`", text):
            assert "copy your work" in text[max(0, match.start() - 200):match.start()], (
                f"{source.name}: {text[match.start() - 100:match.end()]}")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(p.name for p in SOLUTIONS_DIR.glob("ex*.ipynb")))
def test_unmodified_exercise_fails_every_grader_cell(notebook, tmp_path, monkeypatch):
    """Judged on a fresh student copy, not on exercises/, where a learner's answers may be."""
    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    fresh = write(student_copy(nbformat.read(SOLUTIONS_DIR / notebook, as_version=4)), tmp_path / notebook)
    cells = execute(fresh)
    graders = [cell for cell in cells if is_grader_cell(cell.source)]
    assert graders, f"{notebook} has no grader cells (they start with '# GRADER')"
    for cell in graders:
        verdicts = parse_verdicts(cell.text)
        assert verdicts, f"a grader cell printed no verdicts: {cell.error or cell.text[:300]}"
        assert not any(v.passed for v in verdicts), [v.line() for v in verdicts if v.passed]
