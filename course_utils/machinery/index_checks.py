"""Checks that ask the package index (course authors, with network): `make lock-check` runs them.

They stay out of `make test`, because their answer changes when someone publishes a package:
* `make lock` from pyproject.toml still writes requirements.lock to the byte (the Makefile diffs);
* every pinned GPU extra (pyproject.toml's `gpu`) is published for linux x86_64 and CPython 3.11.

    python -m course_utils.machinery.index_checks
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
import urllib.request

from ..paths import REPO_ROOT


def pypi_files(name: str, version: str) -> list[str]:
    """The files PyPI publishes for one release of a project (its JSON API).

    Internal helper: no lesson calls it.
    """
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as response:
        return [f["filename"] for f in json.load(response)["releases"].get(version, [])]


def gpu_extras_problems() -> list[str]:
    """What is wrong with the pinned GPU extras on PyPI today ([] when each is published for the docker image).

    Internal helper: no lesson calls it.
    """
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    dockerfile = (REPO_ROOT / "docker" / "jupyter" / "Dockerfile").read_text()
    problems = []
    for requirement in extras:
        name, _, version = requirement.partition("==")
        files = pypi_files(name, version)
        wheels = [f for f in files if f.endswith(".whl") and "x86_64" in f and "linux" in f
                  and re.search(r"-(cp311|py3|py2\.py3)-", f)]
        if not files:
            problems.append(f"PyPI has no {requirement}: pick a version from `pip index versions {name}`")
        elif not wheels:
            # NVIDIA publishes some packages on PyPI only as a stub sdist that fetches the real wheel from
            # NVIDIA's index at install time; then the image must name that index.
            if files != [f"{name.replace('-', '_')}-{version}.tar.gz"]:
                problems.append(f"{requirement}: no linux x86_64 CPython 3.11 wheel among {files}")
            elif "--extra-index-url https://pypi.nvidia.com" not in dockerfile:
                problems.append(f"{name} on PyPI is a stub that downloads from NVIDIA's index: name it in the Dockerfile")
    return problems


def main() -> int:
    """Print the problems of the GPU extras on PyPI; 1 when there are any.

    Internal helper: no lesson calls it.
    """
    problems = gpu_extras_problems()
    for problem in problems:
        print(problem)
    print("GPU extras: published as pinned" if not problems else f"GPU extras: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
