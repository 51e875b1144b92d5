"""Generate the student copies in exercises/ from the reference notebooks in solutions/.

In a solution notebook, code between the marker lines

    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

is replaced by a stub (`# YOUR CODE HERE` and `raise NotImplementedError()`) at the
same indentation, and in a markdown cell by "YOUR ANSWER HERE". Outputs and
execution counts are cleared. exercises/ is never edited by hand:
`python -m course_utils release` rewrites it, and a test fails when it is stale.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from .paths import REPO_ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"


def strip_solution_regions(source: str, markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source with a stub.

    Introduced in ex01_custom_handler.
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

    Introduced in ex01_custom_handler.
    """
    exercise = nbformat.from_dict(solution)
    for cell in exercise.cells:
        cell.source = strip_solution_regions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    exercise.metadata.pop("widgets", None)
    return exercise


def render(notebook: nbformat.NotebookNode) -> str:
    """The exact text a notebook is written as (so two renders can be compared).

    Introduced in ex01_custom_handler.
    """
    return nbformat.writes(notebook) + "\n"


def release(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR) -> list[Path]:
    """Write exercises/exNN_*.ipynb for every solutions/exNN_*.ipynb; return the files written.

    Introduced in ex01_custom_handler.
    """
    exercises_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for solution_path in sorted(solutions_dir.glob("ex*.ipynb")):
        target = exercises_dir / solution_path.name
        target.write_text(render(student_copy(nbformat.read(solution_path, as_version=4))))
        written.append(target)
    return written


def stale_exercises(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR) -> list[str]:
    """Names of exercise notebooks that are missing, extra or differ from a fresh release.

    Introduced in ex01_custom_handler.
    """
    problems = []
    expected = {p.name for p in solutions_dir.glob("ex*.ipynb")}
    for name in sorted(expected):
        target = exercises_dir / name
        fresh = render(student_copy(nbformat.read(solutions_dir / name, as_version=4)))
        if not target.exists():
            problems.append(f"{name}: missing from {exercises_dir.name}/")
        elif target.read_text() != fresh:
            problems.append(f"{name}: differs from the solution with regions stripped")
    for extra in sorted({p.name for p in exercises_dir.glob("ex*.ipynb")} - expected):
        problems.append(f"{extra}: has no solution notebook")
    return problems
