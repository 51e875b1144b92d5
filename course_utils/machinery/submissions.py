"""Grade a folder of submitted exercise notebooks: the instructor's command.

    python -m course_utils grade-submissions submissions/ --out graded/ --jobs 2 --timeout 900

The folder holds one folder per learner, with that learner's exercise notebooks in it:
`submissions/alice/ex01_custom_handler.ipynb`. Each notebook is graded as `make grade` grades it
(course_utils/grade.py: rebuilt from the course's copy of the exercise, keeping only the
learner's answer cells and added cells; run in a fresh kernel with its own work folder; scored
from recorded verdicts), in a process of its own with a time limit, `jobs` at a time. A notebook
that runs past its limit is stopped and recorded as "timeout"; the others are still graded.

Written into `out`:
* gradebook.csv: one row per learner and exercise (score, points, checks passed, status, seconds,
  and "review" where answer code reaches into the grading machinery: read those by hand);
* feedback/<learner>.md: every check with its hint, and notes (restored cells, errors, timeouts).
"""

from __future__ import annotations

import contextlib
import csv
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from .grade import ExerciseScore, result_from_json, score_against_key, solution_for
from .grading import Verdict, read_verdicts
from ..paths import REPO_ROOT
from ..progress import progress

GRADEBOOK_COLUMNS = ["learner", "exercise", "score", "points", "checks_passed", "checks", "status", "seconds",
                     "review"]


@dataclass(frozen=True)
class Graded:
    """One learner's graded exercise."""

    learner: str
    score: ExerciseScore
    seconds: float


def find_submissions(folder: Path) -> tuple[dict[str, dict[str, Path]], dict[str, list[str]]]:
    """(learner -> exercise -> notebook, learner -> notes), from folder/<learner>/exNN_*.ipynb.

    Every learner folder gets an entry, even an empty one. Where a learner handed in one exercise
    twice (a JupyterLab "-Copy1", say), the file named like the exercise is graded, else the newest;
    files that name no exercise are skipped. Both are noted in the learner's feedback.
    Internal helper: no lesson calls it.
    """
    found: dict[str, dict[str, Path]] = {}
    notes: dict[str, list[str]] = {}
    for learner in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")):
        mine, said = found.setdefault(learner.name, {}), notes.setdefault(learner.name, [])
        candidates: dict[str, list[Path]] = {}
        for notebook in sorted(learner.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in notebook.parts:
                continue
            try:
                candidates.setdefault(solution_for(notebook).stem, []).append(notebook)
            except ValueError:
                said.append(f"{notebook.relative_to(learner)} was not graded: its name starts with no exercise (exNN_...)")
        for exercise, notebooks in candidates.items():
            exact = [n for n in notebooks if n.name == f"{exercise}.ipynb"]
            chosen = (exact or sorted(notebooks, key=lambda n: n.stat().st_mtime))[-1]
            mine[exercise] = chosen
            said += [f"{n.relative_to(learner)} was not graded: {chosen.relative_to(learner)} is the {exercise} "
                     "that was" for n in notebooks if n != chosen]
    return found, notes


def _unanswered(exercise: str, status: str, note: str) -> ExerciseScore:
    """A score of 0 on every check of `exercise`, with the reason."""
    unrun = score_against_key(solution_for(Path(f"{exercise}.ipynb")), [])
    return ExerciseScore(exercise, [Verdict(v.check_id, v.points, False, v.description, note) for v in unrun],
                         [note], status)


def grade_one(learner: str, notebook: Path, timeout_s: float) -> Graded:
    """Grade one notebook in a process of its own; stop it (and its kernel and servers) after `timeout_s`.

    Checks that passed before the limit still count: the verdicts are recorded in this process's folder.
    Internal helper: no lesson calls it.
    """
    solution = solution_for(notebook)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="submission-") as folder:
        result, record = Path(folder) / "result.json", Path(folder) / "verdicts.jsonl"
        command = [sys.executable, "-m", "course_utils.machinery.grade", str(Path(notebook).resolve()), str(result),
                   str(record), str(timeout_s)]
        runner = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        try:
            _, errors = runner.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_tree(runner.pid)   # the runner, its kernel (a session of its own) and what they started
            runner.wait()
            note = f"stopped after the time limit of {timeout_s:.0f} s (a cell that never finishes?); checks that " \
                   "had passed still count"
            score = ExerciseScore(solution.stem, score_against_key(solution, read_verdicts(record)), [note], "timeout")
            return Graded(learner, score, time.monotonic() - began)
        if runner.returncode != 0 or not result.exists():
            lines = [line for line in (errors or "").strip().splitlines() if line.strip(" -")]
            note = f"could not be graded: {(lines[-1] if lines else 'no output')[:300]}"
            return Graded(learner, _unanswered(solution.stem, "error", note), time.monotonic() - began)
        return Graded(learner, result_from_json(result.read_text(encoding="utf-8")), time.monotonic() - began)


def _stop_tree(pid: int) -> None:
    """Kill a process and every process below it, even those in sessions of their own."""
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


def grade_submissions(folder: Path, out: Path, jobs: int = 2, timeout_s: float = 900,
                      show_progress: bool = True) -> list[Graded]:
    """Grade every submitted notebook, `jobs` at a time; write gradebook.csv and feedback/ into `out`.

    Internal helper: no lesson calls it.
    """
    submissions, notes = find_submissions(folder)
    exercises = sorted({exercise for notebooks in submissions.values() for exercise in notebooks})
    work = [(learner, notebook) for learner, notebooks in submissions.items() for notebook in notebooks.values()]
    graded: list[Graded] = []
    with ThreadPoolExecutor(max(1, jobs)) as pool, progress(total=len(work), desc="grading",
                                                             enabled=show_progress) as bar:
        for done in pool.map(lambda item: grade_one(*item, timeout_s), work):
            graded.append(done)
            bar.update(1)
    for learner, notebooks in submissions.items():
        for exercise in exercises:
            if exercise not in notebooks:
                graded.append(Graded(learner, _unanswered(exercise, "not submitted", "not submitted"), 0.0))
    graded.sort(key=lambda g: (g.learner, g.score.name))
    write_gradebook(graded, Path(out) / "gradebook.csv")
    for learner in submissions:
        write_feedback(learner, [g for g in graded if g.learner == learner], Path(out) / "feedback", notes[learner])
    return graded


def write_gradebook(graded: list[Graded], path: Path) -> Path:
    """gradebook.csv: one row per learner and exercise.

    Internal helper: no lesson calls it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(GRADEBOOK_COLUMNS)
        for g in graded:
            passed = sum(v.passed for v in g.score.verdicts)
            writer.writerow([g.learner, g.score.name, g.score.score, g.score.points, passed, len(g.score.verdicts),
                             g.score.status, f"{g.seconds:.1f}",
                             "yes" if any(n.startswith("REVIEW") for n in g.score.notes) else ""])
    return path


def write_feedback(learner: str, graded: list[Graded], folder: Path, notes: list[str] = ()) -> Path:
    """feedback/<learner>.md: per exercise, every check (✅/❌ with its hint) and the notes.

    Internal helper: no lesson calls it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(g.score.score for g in graded), sum(g.score.points for g in graded)
    lines = [f"# Feedback for {learner}", "", f"Total: **{total[0]}/{total[1]}** points", ""]
    lines += [*(f"- note: {note}" for note in notes), *([""] if notes else [])]
    for g in graded:
        lines += [f"## {g.score.name}: {g.score.score}/{g.score.points} ({g.score.status})", ""]
        lines += [f"- {v.line()}" for v in g.score.verdicts]
        lines += [f"- note: {note}" for note in g.score.notes]
        lines.append("")
    path = folder / f"{learner}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(folder: Path, out: Path, jobs: int, timeout_s: float) -> int:
    """The grade-submissions command: grade, write the gradebook and feedback, print a summary.

    Internal helper: no lesson calls it.
    """
    began = time.monotonic()
    graded = grade_submissions(folder, out, jobs, timeout_s)
    for learner in dict.fromkeys(g.learner for g in graded):
        mine = [g for g in graded if g.learner == learner]
        unusual = [f"{g.score.name} {g.score.status}" for g in mine if g.score.status not in ("graded",)]
        print(f"{learner}: {sum(g.score.score for g in mine)}/{sum(g.score.points for g in mine)}"
              + (f"  ({', '.join(unusual)})" if unusual else ""))
    print(f"graded {sum(g.score.status != 'not submitted' for g in graded)} notebook(s) in "
          f"{time.monotonic() - began:.0f} s; wrote {Path(out) / 'gradebook.csv'} and {Path(out) / 'feedback'}/")
    return 0
