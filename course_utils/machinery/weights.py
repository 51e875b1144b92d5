"""Regenerate the model weights the course ships (course_utils/weights/), the same bytes on any x86-64 CPU.

Training is seeded and single-threaded, yet its result depends on the CPU: Intel MKL (matrix
products), ATen's vectorized kernels (sums, activations) and oneDNN (convolutions) each pick
code for the CPU's vector instructions, and other code rounds differently in the last bit,
which thirty epochs of training amplify (held-out accuracy 0.823 on an AVX2 path, 0.820 on
AVX-512). So the course trains once, on one code path that every x86-64 CPU since 2013 can
run, and ships the weights:

    python -m course_utils train-models            # (re)writes course_utils/weights/*.pt
    python -m course_utils train-models --check    # trains again, compares with the shipped files

Each model trains in a fresh interpreter, because the three libraries read their variables
when they load.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ..models import WEIGHTS_DIR, weights_file

# (name, seed, epochs) of every model a lesson, exercise or grader loads.
SHIPPED = [("churn", 0, 30), ("churn", 1, 30), ("churn", 1, 60), ("churn", 2, 30), ("digits", 0, 12)]
TRAINERS = {"churn": "train_churn_model", "digits": "train_digit_cnn"}

# The AVX2 code path of each library, which the shipped weights were trained on.
AVX2_CODE_PATH = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Every variable that forces a math library onto another code path (tests/test_cpu_code_paths.py).
CODE_PATH_VARIABLES = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")

_TRAIN = """
import sys, torch
from course_utils import models
trained = getattr(models, sys.argv[1])(seed=int(sys.argv[2]), epochs=int(sys.argv[3]))
torch.save(trained.model.state_dict(), sys.argv[4])
print(f"{trained.test_accuracy:.4f}")
"""


def train_file(name: str, seed: int, epochs: int, target: Path) -> float:
    """Train one model in a fresh interpreter on the AVX2 code path and save its state dict; return its accuracy.

    Internal helper: no lesson calls it.
    """
    env = {**os.environ, **AVX2_CODE_PATH}
    done = subprocess.run([sys.executable, "-c", _TRAIN, TRAINERS[name], str(seed), str(epochs), str(target)],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"training {name} seed={seed} epochs={epochs} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes.

    Internal helper: no lesson calls it.
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_models(check: bool = False, folder: Path = WEIGHTS_DIR) -> int:
    """Write every shipped model's weights (or, with `check`, train them anew and compare); 0 when all is well.

    Internal helper: no lesson calls it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    differing = 0
    for name, seed, epochs in SHIPPED:
        shipped = folder / weights_file(name, seed, epochs).name
        target = shipped.with_suffix(".new") if check else shipped
        accuracy = train_file(name, seed, epochs, target)
        if check:
            same = shipped.is_file() and sha256(target) == sha256(shipped)
            differing += not same
            target.unlink()
            print(f"{shipped.name:28s} accuracy {accuracy:.4f}  {'identical' if same else 'DIFFERENT'} to the shipped file")
        else:
            print(f"{shipped.name:28s} accuracy {accuracy:.4f}  sha256 {sha256(shipped)[:16]}")
    if differing:
        print(f"{differing} file(s) differ: this machine's AVX2 code path rounds differently, or training changed. "
              "Run `python -m course_utils train-models`, re-execute the notebooks, and review the new numbers.")
    return 1 if differing else 0
