"""The grade command: run a learner's exercise notebooks and print a score table."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .grading import Verdict, parse_verdicts
from .notebook_runner import execute
from .release import EXERCISES_DIR


@dataclass(frozen=True)
class ExerciseScore:
    """The verdicts of one executed exercise notebook."""

    name: str
    verdicts: list[Verdict]

    @property
    def score(self) -> int:
        return sum(v.score for v in self.verdicts)

    @property
    def points(self) -> int:
        return sum(v.points for v in self.verdicts)


def grade_notebook(path: Path) -> ExerciseScore:
    """Execute one exercise notebook and collect the verdict lines its grader cells print.

    Introduced in ex01_custom_handler.
    """
    # Its own work folder: never the one of a kernel where the learner has this exercise open.
    with tempfile.TemporaryDirectory(prefix="grade-") as work:
        text = "\n".join(cell.text for cell in execute(path, env={"COURSE_WORK_DIR": work}))
    return ExerciseScore(path.stem, parse_verdicts(text))


def score_table(scores: list[ExerciseScore]) -> str:
    """A text table: one row per exercise with its checks passed and points.

    Introduced in ex01_custom_handler.
    """
    rows = [("exercise", "checks passed", "points")]
    for s in scores:
        rows.append((s.name, f"{sum(v.passed for v in s.verdicts)}/{len(s.verdicts)}", f"{s.score}/{s.points}"))
    rows.append(("total", "", f"{sum(s.score for s in scores)}/{sum(s.points for s in scores)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows)


def grade_main(targets: list[Path]) -> int:
    """Grade notebooks (default: every exercises/ex*.ipynb) and print the table.

    Introduced in ex01_custom_handler.
    """
    paths: list[Path] = []
    for target in targets or [EXERCISES_DIR]:
        paths += sorted(target.glob("ex*.ipynb")) if target.is_dir() else [target]
    if not paths:
        print("no exercise notebooks found; pass a path such as exercises/ex01_custom_handler.ipynb")
        return 1
    scores = []
    for path in paths:
        print(f"grading {path} ...", flush=True)
        scores.append(grade_notebook(path))
        for verdict in scores[-1].verdicts:
            print("  " + verdict.line())
    print()
    print(score_table(scores))
    print()
    print(next_step(scores))
    return 0


def next_step(scores: list[ExerciseScore]) -> str:
    """One line: the first exercise (in course order) without full marks, or that all are done.

    Course machinery: not used in lessons.
    """
    for score in sorted(scores, key=lambda s: s.name):
        if score.points == 0 or score.score < score.points:
            return (f"Next: {score.name} ({score.score}/{score.points} points). Open exercises/{score.name}.ipynb, "
                    "answer where it says YOUR CODE HERE, and run its grader cells; the ❌ lines say what to fix.")
    return "All graded exercises have full marks. Next: the closing benchmark, notebooks/09_benchmark.ipynb."
