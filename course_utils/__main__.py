"""Command line: python -m course_utils {doctor,grade,grade-submissions,reset-exercise,release,check-release,execute,
train-models}."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _release(force: bool) -> int:
    from .machinery.release import release

    written, kept = release(force=force)
    for path in written:
        print(f"wrote {path}")
    for path in kept:
        print(f"kept {path}: it is not the student copy release last wrote (your answers?), so it was not replaced")
    if kept:
        print("Nothing of yours was overwritten. To replace those files anyway, first copy your work elsewhere, "
              "then run `python -m course_utils release --force`.")
    return 0


def _reset_exercise(name: str) -> int:
    from .machinery.release import reset_exercise

    try:
        target, backup = reset_exercise(name)
    except ValueError as error:
        print(error)
        return 2
    print(f"restored {target} to its original student copy")
    if backup:
        print(f"your previous copy is saved as {backup}")
    return 0


def _check_release() -> int:
    from .machinery.release import stale_exercises

    problems = stale_exercises(strict=True)
    for problem in problems:
        print(problem)
    if problems:
        print("exercises/ does not match solutions/ (for course authors: regenerate them with "
              "`python -m course_utils release`, which keeps edited exercises, and commit the result).")
    return 1 if problems else 0


def _execute(notebooks: list[Path]) -> int:
    from .machinery.notebook_store import execute_and_store

    for notebook in notebooks:
        print(f"executing {notebook} ...", flush=True)
        execute_and_store(notebook)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="check this machine for the course")
    doctor.add_argument("--prereqs", action="store_true", help="only what `make setup` needs (Python, Java, libpython)")
    grade = sub.add_parser("grade", help="run exercise notebooks and print a score table")
    grade.add_argument("notebooks", nargs="*", type=Path, help="notebooks or folders (default: exercises/)")
    reset = sub.add_parser("reset-exercise", help="restore one exercise (e.g. ex01) to its student copy")
    reset.add_argument("name", help="the exercise, e.g. ex01")
    release = sub.add_parser("release", help="regenerate exercises/ from solutions/ (keeps edited exercises)")
    release.add_argument("--force", action="store_true", help="also replace exercises with uncommitted changes")
    sub.add_parser("check-release", help="fail if the committed exercises/ are stale")
    submissions = sub.add_parser("grade-submissions", help="instructors: grade a folder of learners' notebooks")
    submissions.add_argument("folder", type=Path, help="one folder per learner, e.g. submissions/alice/ex01_....ipynb")
    submissions.add_argument("--out", type=Path, default=Path("graded"), help="where gradebook.csv and feedback/ go")
    submissions.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default 2)")
    submissions.add_argument("--timeout", type=float, default=900, help="seconds one notebook may take (default 900)")
    execute = sub.add_parser("execute", help="run notebooks and store them with fresh outputs")
    execute.add_argument("notebooks", nargs="+", type=Path)
    models = sub.add_parser("train-models", help="course authors: retrain the shipped model weights (AVX2 code path)")
    models.add_argument("--check", action="store_true", help="train anew and compare with the shipped files")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .doctor import main as doctor_main
        return doctor_main(prereqs_only=args.prereqs)
    if args.command == "reset-exercise":
        return _reset_exercise(args.name)
    if args.command == "release":
        return _release(args.force)
    if args.command == "check-release":
        return _check_release()
    if args.command == "execute":
        return _execute(args.notebooks)
    if args.command == "train-models":
        from .machinery.weights import train_models
        return train_models(check=args.check)
    if args.command == "grade-submissions":
        from .machinery.submissions import main as submissions_main
        return submissions_main(args.folder, args.out, args.jobs, args.timeout)
    from .machinery.grade import grade_main
    return grade_main(args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
