"""Generate the student copies in exercises/ from the reference notebooks in solutions/.

In a solution notebook, code between the marker lines

    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

is replaced by a stub (`# YOUR CODE HERE` and `raise NotImplementedError()`) at the
same indentation, and in a markdown cell by "YOUR ANSWER HERE". Outputs and
execution counts are cleared.

A learner's answers live in exercises/, so nothing here overwrites them by accident.
exercises/.released.json records the student copy release wrote for each exercise:
staleness is judged against that record (not the file a learner edits), `release`
skips an exercise that differs from it unless forced, and `reset_exercise` restores
one exercise on purpose after saving a backup.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

import nbformat

from .notebook_store import as_text, normalized
from ..paths import REPO_ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"


def strip_solution_regions(source: str, markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source with a stub.

    Internal helper: no lesson calls it.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution region; close it with {END}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}YOUR ANSWER HERE"] if markdown else [
                f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
        elif marker == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without a {BEGIN} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a {BEGIN} region is never closed: add a line {END}")
    return "\n".join(out)


def student_copy(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the exercise version of a solution notebook (regions stubbed, outputs cleared).

    Internal helper: no lesson calls it.
    """
    exercise = nbformat.from_dict(solution)
    for cell in exercise.cells:
        cell.source = strip_solution_regions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return normalized(exercise)


MANIFEST = ".released.json"


def fresh_copy(solution_path: Path) -> str:
    """The text of the student copy that release writes for one solution notebook.

    Internal helper: no lesson calls it.
    """
    return as_text(student_copy(nbformat.read(solution_path, as_version=4)))


def digest(text: str) -> str:
    """SHA-256 of a notebook's text.

    Internal helper: no lesson calls it.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def released_digests(exercises_dir: Path = EXERCISES_DIR) -> dict[str, str]:
    """What `release` last wrote: exercise file name -> SHA-256 of the student copy (exercises/.released.json).

    Internal helper: no lesson calls it.
    """
    path = exercises_dir / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def has_local_changes(path: Path) -> bool:
    """True when an exercise file differs from the student copy `release` wrote (a learner's answers).

    Internal helper: no lesson calls it.
    """
    path = Path(path)
    return path.exists() and digest(path.read_text(encoding="utf-8")) != released_digests(path.parent).get(path.name)


def course_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks that are the course's own files: every lesson and solution, and each exercise still unedited.

    An exercise that differs from the student copy release wrote is a learner's work, whatever saved
    it (JupyterLab, VS Code, nbformat, a script), and no test judges it.

    Internal helper: no lesson calls it.
    """
    root = Path(root)
    exercises = [p for p in sorted((root / "exercises").glob("*.ipynb")) if not has_local_changes(p)]
    return sorted([*root.glob("notebooks/*.ipynb"), *root.glob("solutions/*.ipynb"), *exercises])


def release(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR,
            force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write exercises/exNN_*.ipynb from every solutions/exNN_*.ipynb; return (written, kept).

    An exercise with local changes (not the copy release last wrote, committed or not) is
    kept, not overwritten, unless `force` is true. exercises/.released.json records what
    each student copy is, so a later release or `make test` can tell answers from staleness.

    Internal helper: no lesson calls it.
    """
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written, kept, digests = [], [], {}
    for solution_path in sorted(solutions_dir.glob("ex*.ipynb")):
        target = exercises_dir / solution_path.name
        fresh = fresh_copy(solution_path)
        digests[target.name] = digest(fresh)
        if target.exists() and target.read_text(encoding="utf-8") == fresh:
            continue
        if not force and has_local_changes(target):
            kept.append(target)
            continue
        target.write_text(fresh, encoding="utf-8")
        written.append(target)
    (exercises_dir / MANIFEST).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return written, kept


def backup_dir() -> Path:
    """Where reset_exercise saves the copy it replaces (exercise-backups/, ignored by git).

    Internal helper: no lesson calls it.
    """
    return REPO_ROOT / "exercise-backups"


def reset_exercise(name: str, solutions_dir: Path = SOLUTIONS_DIR,
                   exercises_dir: Path = EXERCISES_DIR) -> tuple[Path, Path | None]:
    """Restore one exercise (e.g. "ex01") to its original student copy; return (it, the backup).

    A copy that differs from the original is first saved in exercise-backups/ under a new name.

    Internal helper: no lesson calls it.
    """
    matches = sorted(solutions_dir.glob(f"{name}_*.ipynb")) or sorted(solutions_dir.glob(f"{name}.ipynb"))
    if len(matches) != 1:
        known = ", ".join(p.name.split("_")[0] for p in sorted(solutions_dir.glob("ex*.ipynb")))
        raise ValueError(f"no single exercise named {name!r}; choose one of: {known} (e.g. EX=ex01)")
    target = exercises_dir / matches[0].name
    fresh = fresh_copy(matches[0])
    backup = None
    if target.exists() and target.read_text(encoding="utf-8") != fresh:
        backup_dir().mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for number in itertools.count(1):
            backup = backup_dir() / f"{target.stem}.{stamp}-{number}.ipynb"
            try:
                with open(backup, "xb") as copy:   # never replace an earlier backup
                    copy.write(target.read_bytes())
                break
            except FileExistsError:
                continue
    target.write_text(fresh, encoding="utf-8")
    return target, backup


def stale_exercises(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR,
                    strict: bool = False) -> list[str]:
    """Problems that say exercises/ was not released from the current solutions/ ([] when in step).

    Judged against exercises/.released.json, the record of what release wrote, so a
    learner's answers (edited, committed or duplicated) never make this fail. With
    `strict` (course authors, CI's clean clone) the files must also be exactly those copies.

    Internal helper: no lesson calls it.
    """
    digests = released_digests(exercises_dir)
    problems = []
    expected = {p.name for p in solutions_dir.glob("ex*.ipynb")}
    for name in sorted(expected):
        fresh = fresh_copy(solutions_dir / name)
        if digests.get(name) != digest(fresh):
            problems.append(f"{name}: solutions/ changed since the last release")
        elif strict and not (exercises_dir / name).exists():
            problems.append(f"{name}: missing from {exercises_dir.name}/")
        elif strict and (exercises_dir / name).read_text(encoding="utf-8") != fresh:
            problems.append(f"{name}: differs from the solution with regions stripped")
    for extra in sorted(set(digests) - expected):
        problems.append(f"{extra}: released, but has no solution notebook")
    return problems
