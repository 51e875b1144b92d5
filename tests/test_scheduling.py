"""How `make test` shares its two workers: tests/conftest.py's TIMED_TOGETHER names files that exist."""

from __future__ import annotations

import pytest
from conftest import TIMED_TOGETHER

from course_utils.paths import REPO_ROOT


@pytest.mark.parametrize("name", sorted(TIMED_TOGETHER))
def test_every_file_timed_together_exists(name):
    assert (REPO_ROOT / name).is_file(), f"TIMED_TOGETHER names {name}, which is not in the repository: rename it there"
