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
import tempfile
from pathlib import Path

from ..language_model import TOKENIZER_FILE
from ..models import WEIGHTS_DIR, weights_file

# (name, seed, epochs) of every model a lesson, exercise or grader loads.
# For the language model the last number counts optimizer steps, not epochs.
SHIPPED = [("churn", 0, 30), ("churn", 1, 30), ("churn", 1, 60), ("churn", 2, 30), ("digits", 0, 12),
           ("digits_linear", 0, 30), ("zen_lm", 0, 300)]
TRAINERS = {"churn": "models:train_churn_model", "digits": "models:train_digit_cnn",
            "digits_linear": "models:train_digit_linear",
            "zen_lm": "language_model:train_language_model"}

# The AVX2 code path of each library, which the shipped weights were trained on.
AVX2_CODE_PATH = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Every variable that forces a math library onto another code path (tests/test_cpu_code_paths.py).
CODE_PATH_VARIABLES = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")

_TRAIN = """
import importlib, sys, torch
module, function = sys.argv[1].split(":")
trained = getattr(importlib.import_module("course_utils." + module), function)(int(sys.argv[2]), int(sys.argv[3]))
torch.save(trained.model.state_dict(), sys.argv[4])
if hasattr(trained, "tokenizer"):   # the language model ships its tokenizer beside its weights
    trained.tokenizer.save(sys.argv[5])
print(f"{trained.loss if hasattr(trained, 'tokenizer') else trained.test_accuracy:.4f}")
"""


def shipped_files(name: str, seed: int, epochs: int, folder: Path = WEIGHTS_DIR) -> list[Path]:
    """The files one shipped model consists of: its weights, and for the language model its tokenizer.

    Internal helper: no lesson calls it.
    """
    weights = folder / weights_file(name, seed, epochs).name
    return [weights, folder / TOKENIZER_FILE.name] if name == "zen_lm" else [weights]


def train_file(name: str, seed: int, epochs: int, targets: list[Path]) -> float:
    """Train one model in a fresh interpreter on the AVX2 code path and write its `shipped_files` to `targets`.

    Returns its held-out accuracy (the language model: its last training loss).
    Internal helper: no lesson calls it.
    """
    env = {**os.environ, **AVX2_CODE_PATH}
    done = subprocess.run([sys.executable, "-c", _TRAIN, TRAINERS[name], str(seed), str(epochs), *map(str, targets)],
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
    """Write every shipped model's files (or, with `check`, train them anew and compare); 0 when all is well.

    Internal helper: no lesson calls it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    differing = 0
    for name, seed, epochs in SHIPPED:
        shipped = shipped_files(name, seed, epochs, folder)
        # torch.save names the archive's root folder after the file: a check must write the same file name
        targets = [Path(tempfile.mkdtemp(prefix="train-check-")) / path.name for path in shipped] if check else shipped
        score = train_file(name, seed, epochs, targets)
        for path, target in zip(shipped, targets):
            if check:
                same = path.is_file() and sha256(target) == sha256(path)
                differing += not same
                target.unlink()
                target.parent.rmdir()
                print(f"{path.name:28s} score {score:.4f}  {'identical' if same else 'DIFFERENT'} to the shipped file")
            else:
                print(f"{path.name:28s} score {score:.4f}  sha256 {sha256(path)[:16]}")
    if differing:
        print(f"{differing} file(s) differ: this machine's AVX2 code path rounds differently, or training changed. "
              "Run `python -m course_utils train-models`, re-execute the notebooks, and review the new numbers.")
    return 1 if differing else 0
