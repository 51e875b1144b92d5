"""Grade exercise notebooks: the learner's `make grade`, and one notebook for the instructor's command.

A notebook is never graded as it is. `restored()` rebuilds it from the course's own copy of the
exercise (nbgrader's idea): every cell comes from the student copy that release writes, except
the answer cells (cells that hold a solution region in solutions/), which keep the learner's
text. An edited grader cell is graded as the original; cells the learner added do not run.

The rebuilt notebook runs in a fresh kernel with its own work folder. run_checks() records each
verdict in a file (COURSE_VERDICTS_FILE), and the score counts only the exercise's own checks,
with their own points. The answer key is the `RUBRIC` at the top of the exercise's checks module
(course_utils/checks/exNN_*.py): which checks count, their points, which are optional. The reference
solution's stored verdict lines must agree with it (a test says so) and give the descriptions of
checks that never ran. ✅ lines a notebook prints count for nothing.

Run as `python -m course_utils.machinery.grade NOTEBOOK RESULT.json [VERDICTS.jsonl] [CELL_TIMEOUT_S]` it
grades one notebook and writes the result as JSON (the instructor's command runs each submission so,
under a time limit, and scores the verdicts file itself if the limit stops it).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .grading import VERDICTS_FILE_ENV, Rubric, Verdict, parse_verdicts, read_verdicts
from .notebook_runner import execute, is_grader_cell
from .notebook_store import write
from .release import BEGIN, EXERCISES_DIR, SOLUTIONS_DIR, student_copy

# Answer code that reaches for the grading machinery itself: flagged for the instructor to read.
SUSPICIOUS = re.compile(r"COURSE_VERDICTS|course_utils\.machinery|course_utils\.checks|\bread_verdicts\b|\brun_checks\b|"
                        r"\bVerdict\b|\bgrader\.\w+\s*=|=\s*grader\b|\bsetattr\s*\(|__dict__")


@dataclass(frozen=True)
class ExerciseScore:
    """The verdicts of one graded exercise notebook, and notes for the learner."""

    name: str
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    status: str = "graded"   # or "timeout", "error", "not submitted"

    @property
    def score(self) -> int:
        return sum(v.score for v in self.verdicts)

    @property
    def points(self) -> int:
        return sum(v.points for v in self.verdicts)


# ----- the exercise a notebook answers, and its key ------------------------------------------
def solution_for(path: Path, solutions_dir: Path = SOLUTIONS_DIR) -> Path:
    """The reference solution of the exercise a notebook answers, found by its name's exNN prefix.

    Internal helper: no lesson calls it.
    """
    match = re.match(r"(ex\d\d)", Path(path).name)
    found = sorted(solutions_dir.glob(f"{match.group(1)}_*.ipynb")) if match else []
    if len(found) != 1:
        known = ", ".join(p.name for p in sorted(solutions_dir.glob("ex*.ipynb")))
        raise ValueError(f"{Path(path).name}: not an exercise notebook; name it like one of {known}")
    return found[0]


def rubric_for(solution: Path) -> Rubric:
    """The answer key of an exercise: the RUBRIC of its checks module, course_utils.checks.<solution name>.

    Internal helper: no lesson calls it.
    """
    module = importlib.import_module(f"course_utils.checks.{Path(solution).stem}")
    rubric = getattr(module, "RUBRIC", None)
    if not isinstance(rubric, Rubric):
        raise ValueError(f"course_utils/checks/{Path(solution).stem}.py declares no RUBRIC = Rubric({{...}})")
    return rubric


def stored_verdicts(solution: Path) -> dict[str, Verdict]:
    """Check id -> the verdict the reference solution's grader cells stored (all ✅ where it ran).

    Internal helper: no lesson calls it.
    """
    notebook = nbformat.read(solution, as_version=4)
    stored: dict[str, Verdict] = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and is_grader_cell(cell.source):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            stored.update((v.check_id, v) for v in parse_verdicts(text))
    if not stored:
        raise ValueError(f"{solution.name} stores no verdict lines; execute it (python -m course_utils execute)")
    return stored


def scored(rubric: Rubric, descriptions: dict[str, str], recorded: list[Verdict]) -> list[Verdict]:
    """One verdict per check of the rubric, in its order and with its points; the last recorded outcome counts.

    A check that did not run scores 0 (described as the reference solution describes it); an optional
    check counts only where it ran. Internal helper: no lesson calls it.
    """
    latest = {v.check_id: v for v in recorded}
    verdicts = []
    for check_id, points in rubric.points.items():
        got = latest.get(check_id)
        if got is None and check_id in rubric.optional:
            continue
        if got is None:
            verdicts.append(Verdict(check_id, points, False, descriptions.get(check_id, ""),
                                    "not run: the grader stopped before this check (see the notes)"))
        else:
            verdicts.append(Verdict(check_id, points, got.passed, got.description, got.reason))
    return verdicts


def score_against_key(solution: Path, recorded: list[Verdict]) -> list[Verdict]:
    """The recorded verdicts of one exercise notebook, scored against that exercise's rubric.

    Internal helper: no lesson calls it.
    """
    descriptions = {check_id: v.description for check_id, v in stored_verdicts(solution).items()}
    return scored(rubric_for(solution), descriptions, recorded)


# ----- rebuilding the notebook from the course's copy --------------------------------------------
def restored(submitted: nbformat.NotebookNode, solution: nbformat.NotebookNode
             ) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook to grade: the student copy with the learner's answer cells put in; and notes.

    Answer cells (those with a solution region) are matched by cell id. Every other cell runs
    as the exercise has it; cells the learner added are left out (helpers belong in an answer cell).

    Internal helper: no lesson calls it.
    """
    template = student_copy(solution)
    answers = {cell.id for cell in solution.cells if BEGIN in cell.source}
    if not all(cell.get("id") for cell in submitted.cells):
        raise ValueError("the notebook's cells have no ids (nbformat 4.5); submit the .ipynb JupyterLab saved")
    theirs = {cell.id: cell for cell in submitted.cells}
    notes, cells = [], []
    title = template.cells[0]
    if title.id not in theirs or theirs[title.id].source.splitlines()[:1] != title.source.splitlines()[:1]:
        notes.append(f"REVIEW: the notebook does not start with this exercise's title "
                     f"({title.source.splitlines()[0][:60]!r}): is it the right exercise, renamed?")
    for number, cell in enumerate(template.cells, start=1):
        mine = theirs.get(cell.id)
        if cell.id in answers and mine is not None:
            cell = nbformat.from_dict({**cell, "source": mine.source})
            found = SUSPICIOUS.search(cell.source)
            if found:
                notes.append(f"REVIEW: answer cell {number} reaches into the grading machinery ({found.group(0)!r})")
        elif mine is None:
            notes.append(f"cell {number} was missing; it ran as the exercise has it")
        elif mine.source != cell.source and cell.cell_type == "code":
            notes.append(f"cell {number} is not an answer cell; your edits to it were set aside "
                         "(it ran as the exercise has it)")
        cells.append(cell)
    known = {cell.id for cell in template.cells}
    added = [cell for cell in submitted.cells if cell.id not in known and cell.cell_type == "code"]
    if added:
        notes.append(f"{len(added)} code cell(s) you added did not run: grading runs only the answer cells, "
                     "so put helpers inside an answer cell")
    notebook = nbformat.from_dict({**template, "cells": []})
    notebook.cells = [nbformat.from_dict({**c, "outputs": [], "execution_count": None}) if c.cell_type == "code"
                      else c for c in cells]
    return notebook, notes


# ----- grading one notebook ---------------------------------------------------------------------
def grade_notebook(path: Path, timeout_s: int = 900, record: Path | None = None) -> ExerciseScore:
    """Rebuild one exercise notebook from the course's copy, run it in a fresh kernel, and score it.

    `timeout_s` limits each cell. Verdicts go to `record` (default: a temp file), so that checks
    that passed before a cell hangs or the kernel dies still count.
    Internal helper: no lesson calls it.
    """
    path = Path(path)
    solution = solution_for(path)
    notebook, notes = restored(nbformat.read(path, as_version=4), nbformat.read(solution, as_version=4))
    # Its own folder, also as the kernel's working folder: parallel gradings never share files, and the
    # work folder is never the one of a kernel where the learner has this exercise open.
    with tempfile.TemporaryDirectory(prefix="grade-") as folder:
        runnable = write(notebook, Path(folder) / path.name)
        record = Path(record) if record else Path(folder) / "verdicts.jsonl"
        cells = []
        try:
            cells = execute(runnable, timeout_s=timeout_s, cwd=Path(folder),
                            env={"COURSE_WORK_DIR": str(Path(folder) / "work"), VERDICTS_FILE_ENV: str(record)})
        except Exception as error:  # noqa: BLE001 - a cell past its time limit, a dead kernel: score what ran
            first = next((line for line in str(error).splitlines() if line.strip(" -")), "")
            notes.append(f"the notebook stopped early ({type(error).__name__}: {first[:200]}); "
                         "checks that had run still count")
        recorded = read_verdicts(record)
    for number, cell in enumerate(cells, start=1):
        if cell.error:
            where = "grader cell" if is_grader_cell(cell.source) else "code cell"
            notes.append(f"{where} {number} raised {cell.error.splitlines()[0][:200]}")
    return ExerciseScore(solution.stem, score_against_key(solution, recorded), notes)


def score_table(scores: list[ExerciseScore]) -> str:
    """A text table: one row per exercise with its checks passed and points.

    Internal helper: no lesson calls it.
    """
    rows = [("exercise", "checks passed", "points")]
    for s in scores:
        rows.append((s.name, f"{sum(v.passed for v in s.verdicts)}/{len(s.verdicts)}", f"{s.score}/{s.points}"))
    rows.append(("total", "", f"{sum(s.score for s in scores)}/{sum(s.points for s in scores)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows)


def grade_main(targets: list[Path]) -> int:
    """Grade notebooks (default: every exercises/ex*.ipynb) and print the table.

    Internal helper: no lesson calls it.
    """
    paths: list[Path] = []
    for target in targets or [EXERCISES_DIR]:
        if target.is_dir():   # one notebook per exercise: the one named as release wrote it, not its copies
            paths += sorted(p for p in target.glob("ex*.ipynb") if (SOLUTIONS_DIR / p.name).is_file())
        else:
            paths.append(target)
    if not paths:
        print("no exercise notebooks found; pass a path such as exercises/ex01_custom_handler.ipynb")
        return 1
    scores = []
    for path in paths:
        print(f"grading {path} ...", flush=True)
        try:
            scores.append(grade_notebook(path))
        except (ValueError, OSError) as error:   # not an exercise, no cell ids, unreadable: say so, go on
            print(f"  could not grade {path.name}: {error}")
            continue
        for line in [*(v.line() for v in scores[-1].verdicts), *(f"note: {n}" for n in scores[-1].notes)]:
            print("  " + line)
    print()
    print(score_table(scores))
    print()
    print(next_step(scores))
    return 0


def next_step(scores: list[ExerciseScore]) -> str:
    """One line: the first exercise (in course order) without full marks, or that all are done.

    Internal helper: no lesson calls it.
    """
    for score in sorted(scores, key=lambda s: s.name):
        if score.points == 0 or score.score < score.points:
            return (f"Next: {score.name} ({score.score}/{score.points} points). Open exercises/{score.name}.ipynb, "
                    "answer where it says YOUR CODE HERE, and run its grader cells; the ❌ lines say what to fix.")
    return "All graded exercises have full marks. Next: the closing benchmark, notebooks/11_benchmark.ipynb."


def result_json(score: ExerciseScore) -> str:
    """One graded notebook as JSON (what `python -m course_utils.machinery.grade` writes).

    Internal helper: no lesson calls it.
    """
    return json.dumps(asdict(score), ensure_ascii=False)


def result_from_json(text: str) -> ExerciseScore:
    """The ExerciseScore that result_json() wrote.

    Internal helper: no lesson calls it.
    """
    data = json.loads(text)
    return ExerciseScore(data["name"], [Verdict(**v) for v in data["verdicts"]], data["notes"], data["status"])


if __name__ == "__main__":   # NOTEBOOK RESULT.json [VERDICTS.jsonl] [CELL_TIMEOUT_S]
    record = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    limit = int(float(sys.argv[4])) if len(sys.argv) > 4 else 900
    Path(sys.argv[2]).write_text(result_json(grade_notebook(Path(sys.argv[1]), limit, record)), encoding="utf-8")
