"""Stored outputs hold on every x86-64 CPU: what the lessons print from the course's models is the same when the
math libraries are forced onto other code paths, on whatever CPU runs this test.

A learner's CPU may run Intel MKL, ATen's vector kernels and oneDNN on their AVX2, AVX-512 or generic code;
each path rounds differently in the last bit. Their variables force a path on one machine:
MKL_ENABLE_INSTRUCTIONS (Intel CPUs) and MKL_CBWR=COMPATIBLE (any CPU) for MKL, ATEN_CPU_CAPABILITY for
ATen, ONEDNN_MAX_CPU_ISA for oneDNN. tests/cpu_path_probe.py prints the lessons' numbers once per path.

Held-out sets are compared by their predicted classes (printed) and their probabilities within HELD_OUT_TOLERANCE:
no lesson prints a whole held-out set, and among its thousands of values one may round either way at 4 decimals
(on an AVX-512 Xeon: churn seed 2's row 222, 0.009549995 there and 0.009550003 on the AVX2 path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_utils.machinery.weights import AVX2_CODE_PATH, CODE_PATH_VARIABLES

PROBE = Path(__file__).with_name("cpu_path_probe.py")
HELD_OUT_TOLERANCE = 1e-5   # last-bit differences are about 1e-7; a lesson prints 4 decimals
CODE_PATHS = {
    "this CPU's own": {},
    "AVX2": AVX2_CODE_PATH,
    "generic (no ATen vector code, oneDNN SSE4.1, MKL's compatible path)":
        {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
}


@pytest.mark.slow
def test_the_lessons_numbers_are_the_same_on_every_code_path(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in CODE_PATH_VARIABLES}
    folders = {name: tmp_path / f"path{i}" for i, name in enumerate(CODE_PATHS)}
    for folder in folders.values():
        folder.mkdir()
    runs = {name: subprocess.Popen([sys.executable, str(PROBE), str(folders[name])], env={**base, **forced},
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name, forced in CODE_PATHS.items()}
    printed = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=240)
        assert run.returncode == 0, f"the probe failed on the {name} code path:\n{err[-3000:]}"
        printed[name] = out
    reference = printed["this CPU's own"]
    assert "lesson 00's model cell prints its stored output: True" in reference, reference
    assert "within rounding of the shipped one: True" in reference, reference
    for name, out in printed.items():
        assert out == reference, f"the {name} code path printed otherwise:\n{out}\nthis CPU's own path:\n{reference}"
    # held-out probabilities (the same predicted classes are in the printed text): within a last-bit difference
    own = folders["this CPU's own"]
    assert sorted(own.glob("*.npy")), "the probe wrote no held-out probabilities"
    for name, folder in folders.items():
        for saved in sorted(own.glob("*.npy")):
            gap = float(np.abs(np.load(folder / saved.name) - np.load(saved)).max())
            assert gap <= HELD_OUT_TOLERANCE, f"{saved.stem}: the {name} code path differs by {gap:.2e}"
