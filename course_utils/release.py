"""Generate the student copies in exercises/ from the reference notebooks in solutions/.

In a solution notebook, code between the marker lines

    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

is replaced by a stub (`# YOUR CODE HERE` and `raise NotImplementedError()`) at the
same indentation, and in a markdown cell by "YOUR ANSWER HERE". Outputs and
execution counts are cleared.

A learner's answers live in exercises/, so nothing here overwrites them by accident:
staleness is judged against git's committed copy (not the file a learner edits),
`release` skips an exercise that differs from its committed copy unless forced, and
`reset_exercise` restores one exercise on purpose after saving a backup.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import nbformat

from .notebook_store import as_text, normalized
from .paths import REPO_ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"


def strip_solution_regions(source: str, markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source with a stub.

    Course machinery: not used in lessons.
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

    Course machinery: not used in lessons.
    """
    exercise = nbformat.from_dict(solution)
    for cell in exercise.cells:
        cell.source = strip_solution_regions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return normalized(exercise)


def committed_text(path: Path) -> str | None:
    """The text of `path` as git's HEAD has it, or None (not committed, or not a git checkout).

    Course machinery: not used in lessons.
    """
    path = Path(path).resolve()
    # "HEAD:./NAME" is relative to the working folder, so any checkout (and any clone path) works.
    done = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent,
                          capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def has_local_changes(path: Path) -> bool:
    """True when an exercise file exists and differs from its committed copy (a learner's answers).

    Course machinery: not used in lessons.
    """
    path = Path(path)
    return path.exists() and path.read_text(encoding="utf-8") != committed_text(path)


def release(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR,
            force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write exercises/exNN_*.ipynb from every solutions/exNN_*.ipynb; return (written, kept).

    An exercise with local changes (different from git's committed copy) is kept, not
    overwritten, unless `force` is true.

    Course machinery: not used in lessons.
    """
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for solution_path in sorted(solutions_dir.glob("ex*.ipynb")):
        target = exercises_dir / solution_path.name
        fresh = as_text(student_copy(nbformat.read(solution_path, as_version=4)))
        if target.exists() and target.read_text(encoding="utf-8") == fresh:
            continue
        if not force and has_local_changes(target):
            kept.append(target)
            continue
        target.write_text(fresh, encoding="utf-8")
        written.append(target)
    return written, kept


def backup_dir() -> Path:
    """Where reset_exercise saves the copy it replaces (.exercise-backups/, ignored by git).

    Course machinery: not used in lessons.
    """
    return REPO_ROOT / ".exercise-backups"


def reset_exercise(name: str, solutions_dir: Path = SOLUTIONS_DIR,
                   exercises_dir: Path = EXERCISES_DIR) -> tuple[Path, Path | None]:
    """Restore one exercise (e.g. "ex01") to its original student copy; return (it, the backup).

    The copy it replaces is saved first in .exercise-backups/ with a timestamp.

    Course machinery: not used in lessons.
    """
    matches = sorted(solutions_dir.glob(f"{name}_*.ipynb")) or sorted(solutions_dir.glob(f"{name}.ipynb"))
    if len(matches) != 1:
        known = ", ".join(p.name.split("_")[0] for p in sorted(solutions_dir.glob("ex*.ipynb")))
        raise ValueError(f"no single exercise named {name!r}; choose one of: {known} (e.g. EX=ex01)")
    target = exercises_dir / matches[0].name
    backup = None
    if target.exists():
        backup = backup_dir() / f"{target.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
        backup.parent.mkdir(exist_ok=True)
        backup.write_bytes(target.read_bytes())
    target.write_text(as_text(student_copy(nbformat.read(matches[0], as_version=4))), encoding="utf-8")
    return target, backup


def stale_exercises(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR) -> list[str]:
    """Exercise notebooks whose committed copy is missing, extra or differs from a fresh release.

    Judged against git's committed copy, so a learner's edits to exercises/ never make
    this fail. Outside a git checkout the files on disk are compared instead.

    Course machinery: not used in lessons.
    """
    in_git = committed_text(Path(__file__)) is not None
    problems = []
    expected = {p.name for p in solutions_dir.glob("ex*.ipynb")}
    for name in sorted(expected):
        target = exercises_dir / name
        fresh = as_text(student_copy(nbformat.read(solutions_dir / name, as_version=4)))
        stored = committed_text(target) if in_git else (target.read_text(encoding="utf-8") if target.exists() else None)
        if stored is None:
            problems.append(f"{name}: missing from {exercises_dir.name}/ (in git)")
        elif stored != fresh:
            problems.append(f"{name}: the committed copy differs from the solution with regions stripped")
    # Only committed files count: a learner's own copy (JupyterLab's "Duplicate") is theirs.
    present = {p.name for p in exercises_dir.glob("ex*.ipynb")
               if not in_git or committed_text(p) is not None}
    for extra in sorted(present - expected):
        problems.append(f"{extra}: has no solution notebook")
    return problems
