"""Print what the lessons print from the course's models; tests/test_cpu_code_paths.py runs this under forced
math-library code paths and requires the same text from each. Run as a script: the libraries read the
variables that force a path when they load, so each path needs a fresh interpreter.

`python tests/cpu_path_probe.py FOLDER` also writes each held-out set's probabilities to FOLDER as .npy. Those are
compared within a tolerance, not as printed text: no lesson prints all of them, and among thousands of values one
may lie within a last-bit difference of a 4-decimal rounding boundary (churn seed 2, row 222: 0.009549995 on
AVX-512, 0.009550003 on AVX2)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from course_utils.models import load_churn_model, load_digit_cnn, train_churn_model
from course_utils.paths import REPO_ROOT

ROWS = np.array([[24, 80.5, 2, 12], [2, 110, 5, 1], [60, 30, 0, 24], [12, 70, 1, 12]], dtype=np.float32)


def table(probabilities: np.ndarray) -> str:
    """The 4-decimal probabilities the lessons print, as one digest (and the first rows in full)."""
    text = "\n".join(" ".join(f"{p:.4f}" for p in row) for row in probabilities)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def held_out(name: str, probabilities: np.ndarray) -> str:
    """The predicted classes of a held-out set, as one digest; its probabilities go to the folder in sys.argv[1]."""
    if len(sys.argv) > 1:
        np.save(Path(sys.argv[1]) / f"{name}.npy", probabilities)
    return "classes " + hashlib.sha256(probabilities.argmax(1).astype(np.int64).tobytes()).hexdigest()[:16]


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1).numpy()


def lesson_cell(notebook: str, marker: str) -> tuple[str, str]:
    """The source and stored stdout of the first code cell of a lesson whose source contains `marker`."""
    cells = json.loads((REPO_ROOT / "notebooks" / notebook).read_text())["cells"]
    cell = next(c for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"]))
    stored = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stdout")
    return "".join(cell["source"]), stored


def language_model() -> None:
    """What lessons 13 and 16 print from the shipped language model: greedy and seeded sampled text, next-token odds."""
    from course_utils.language_model import complete, load_language_model

    lm = load_language_model()
    for prompt in ["Beautiful is", "Errors should", "Although", "Kubernetes is"]:
        print(f"greedy {prompt!r}: {complete(lm, prompt, max_tokens=40, stop_at_eos=False)!r}")
    for seed in range(3):
        print(f"sampled seed {seed}: {complete(lm, 'Errors should', 30, temperature=1.0, seed=seed, stop_at_eos=False)!r}")
    print(f"lesson 16's sample: {complete(lm, 'Special cases', 20, temperature=1.0, seed=7)!r}")
    for text in ["Readability counts.<|endoftext|>", "Errors should"]:
        with torch.inference_mode():
            ids = lm.tokenizer.encode(text).ids
            top = torch.softmax(lm.model(torch.tensor([ids]))[0, -1], dim=-1).topk(5)
        print(f"next after {text!r}:", [(int(i), f"{float(p):.3f}") for p, i in zip(top.values, top.indices)])


def main() -> None:
    from course_utils.archiver import save_torchscript
    from course_utils.onnx_tools import export_onnx, onnx_session

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")   # deprecation notices: not what this compares
    work = Path(tempfile.mkdtemp(prefix="cpu-path-"))
    with torch.no_grad():
        for seed, epochs in [(0, 30), (1, 30), (1, 60), (2, 30)]:
            trained = load_churn_model(seed=seed, epochs=epochs)
            rows = softmax(trained.model(torch.from_numpy(ROWS)).numpy())
            probabilities = softmax(trained.model(torch.from_numpy(trained.data.x_test)).numpy())
            print(f"churn seed={seed} epochs={epochs}: accuracy {trained.test_accuracy:.4f}, "
                  f"rows {table(rows)} {rows[0][1]:.4f}, held-out {held_out(f'churn-{seed}-{epochs}', probabilities)}")
        churn, digits = load_churn_model(), load_digit_cnn()
        probabilities = softmax(digits.model(torch.from_numpy(digits.data.x_test)).numpy())
        print(f"digits: accuracy {digits.test_accuracy:.4f}, held-out {held_out('digits', probabilities)}, "
              f"classes {np.bincount(probabilities.argmax(1), minlength=10).tolist()}")
        for name, trained in [("churn", churn), ("digits", digits)]:
            x = trained.data.x_test
            scripted = torch.jit.load(str(save_torchscript(trained.model, work / f"{name}.pt")))
            print(f"{name} TorchScript: held-out "
                  f"{held_out(f'{name}-torchscript', softmax(scripted(torch.from_numpy(x)).numpy()))}")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                path = export_onnx(trained.model, torch.from_numpy(x[:2]), work / f"{name}.onnx")
            session = onnx_session(path)
            print(f"{name} ONNX Runtime: held-out "
                  f"{held_out(f'{name}-onnx', softmax(session.run(None, {'input': x})[0]))}")
        from course_utils.cascade import cascade_table
        from course_utils.models import load_digit_linear

        cheap = load_digit_linear()
        print(f"digits_linear: accuracy {cheap.test_accuracy:.4f}, lesson 17's cascade:\n"
              + cascade_table(cheap.model, digits.model, cheap.data.x_test, cheap.data.y_test,
                              [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01]).round(4).to_string())
        dynamic = torch.ao.quantization.quantize_dynamic(digits.model, {torch.nn.Linear}, dtype=torch.qint8)
        print(f"digits torch.ao dynamic int8: held-out "
              f"{held_out('digits-int8', softmax(dynamic(torch.from_numpy(digits.data.x_test)).numpy()))}")
    language_model()
    again = train_churn_model()
    with torch.no_grad():
        x = torch.from_numpy(churn.data.x_test)
        agreement = float((again.model(x).argmax(1) == churn.model(x).argmax(1)).float().mean())
    print("training here gives a model within rounding of the shipped one:",
          abs(again.test_accuracy - churn.test_accuracy) <= 0.01 and agreement >= 0.98)
    source, stored = lesson_cell("00_setup.ipynb", "load_churn_model()")
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(source, "00_setup", "exec"), {})
    print("lesson 00's model cell prints its stored output:", shown.getvalue() == stored)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
