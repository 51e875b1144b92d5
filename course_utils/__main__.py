"""Command line: python -m course_utils {doctor,release,check-release,grade}."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="check this machine for the course")
    doctor.add_argument("--prereqs", action="store_true", help="only what `make setup` needs (Python, Java, libpython)")
    sub.add_parser("release", help="regenerate exercises/ from solutions/")
    sub.add_parser("check-release", help="fail if exercises/ is stale")
    grade = sub.add_parser("grade", help="run exercise notebooks and print a score table")
    grade.add_argument("notebooks", nargs="*", type=Path, help="notebooks or folders (default: exercises/)")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .doctor import main as doctor_main
        return doctor_main(prereqs_only=args.prereqs)
    if args.command == "release":
        from .release import release
        for path in release():
            print(f"wrote {path}")
        return 0
    if args.command == "check-release":
        from .release import stale_exercises
        problems = stale_exercises()
        for problem in problems:
            print(problem)
        if problems:
            print("exercises/ is stale: run `python -m course_utils release` and commit the result")
        return 1 if problems else 0
    from .grade import grade_main
    return grade_main(args.notebooks)


if __name__ == "__main__":
    sys.exit(main())
