"""Progress bars that end showing their final state, also in a saved notebook.

A plain text bar on standard output: in JupyterLab it redraws in place, and the saved
notebook keeps its last line (e.g. `perf_analyzer churn: 100%|██████████| 4/4 [00:12<00:00]`),
which reads the same whether or not the notebook is trusted. Widget bars (tqdm.auto) save
only their first text snapshot, `0%|          | 0/4`, which untrusted notebooks show.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None,
             enabled: bool = True) -> tqdm:
    """Wrap `iterable` (or count to `total` with .update()) in a text progress bar that stays on screen.

    Introduced in 09_ab_testing.
    """
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=True, file=sys.stdout,
                bar_format=BAR_FORMAT, mininterval=0.5)
