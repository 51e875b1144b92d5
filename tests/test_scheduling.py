"""How `make test` shares its two workers: tests/conftest.py's TIMED_TOGETHER names files and tests that exist."""

from __future__ import annotations

import ast

import pytest
from conftest import TIMED_TOGETHER

from course_utils.paths import REPO_ROOT


@pytest.mark.parametrize("name", sorted(TIMED_TOGETHER))
def test_everything_timed_together_exists(name):
    file, _, test = name.partition("::")
    assert (REPO_ROOT / file).is_file(), f"TIMED_TOGETHER names {file}, which is not in the repository: rename it there"
    if test:
        defined = {node.name for node in ast.parse((REPO_ROOT / file).read_text()).body
                   if isinstance(node, ast.FunctionDef)}
        assert test in defined, f"TIMED_TOGETHER names {name}, but {file} defines no {test}: rename it there"
