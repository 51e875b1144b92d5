"""Graders for ex04_ensemble_postprocess: add a Python-backend postprocessing step that
turns logits into class names, and an ensemble that ends with it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
from tritonclient.grpc import model_config_pb2

from ..data import DIGIT_CLASSES, write_digit_pngs
from ..machinery.grading import GradingSession, Rubric, Verdict, expect
from ..models import Trained, load_digit_cnn
from ..paths import empty_dir
from ..pipelines import png_batch, write_pipeline_steps
from ..servers.triton import TritonServer
from ..triton_config import data_flow_order, read_config, validate_model
from .live_triton import serve_for_grading

ENSEMBLE = "digit_names"
_TRAINED: list[Trained] = []

# check id -> points: the answer key
RUBRIC = Rubric({"4.1": 1, "4.2": 2, "4.3": 2, "4.4": 2, "4.5": 3, "4.6": 1})


def _digits() -> Trained:
    if not _TRAINED:
        _TRAINED.append(load_digit_cnn())
    return _TRAINED[0]


def build_repository(work: Path, write_postprocess: Callable, write_ensemble: Callable) -> Path:
    """A repository with the lesson's preprocess and digits steps plus the learner's two folders.

    Internal helper: no lesson calls it.
    """
    repository = empty_dir(Path(work) / "model_repository")
    write_pipeline_steps(repository, _digits().model)
    write_postprocess(repository / "postprocess", DIGIT_CLASSES)
    write_ensemble(repository / ENSEMBLE)
    return repository


def _names(server: TritonServer, paths: list[Path]) -> list[str]:
    import tritonclient.http as httpclient

    batch = png_batch(paths)
    request = httpclient.InferInput("IMAGE_BYTES", list(batch.shape), "BYTES")
    request.set_data_from_numpy(batch)
    result = server.http_client().infer(ENSEMBLE, [request]).as_numpy("LABEL")
    expect(result is not None, "the ensemble returned no LABEL output: declare output LABEL and map a step output to it")
    return [item.decode() if isinstance(item, bytes) else str(item) for item in np.asarray(result).reshape(-1)]


def grade(write_postprocess: Callable, write_ensemble: Callable, work: Path, show: bool = True) -> list[Verdict]:
    """Both folders validate, Triton loads the ensemble, and it answers class names for PNGs.

    Introduced in ex04_ensemble_postprocess.
    """
    work = empty_dir(work)
    grading = GradingSession()

    def written() -> None:
        grading.found["repo"] = build_repository(work, write_postprocess, write_ensemble)
        for name in ("postprocess", ENSEMBLE):
            expect((grading.found["repo"] / name / "config.pbtxt").is_file(), f"no {name}/config.pbtxt was written")
        expect((grading.found["repo"] / "postprocess" / "1" / "model.py").is_file(),
               "no postprocess/1/model.py: a Python-backend model needs its code in version folder 1")

    def postprocess_config() -> None:
        problems = validate_model(grading.found["repo"] / "postprocess")
        expect(not problems, f"postprocess: {problems[0] if problems else ''}")
        config = read_config(grading.found["repo"] / "postprocess")
        inputs = {t.name: list(t.dims) for t in config.input}
        outputs = {t.name: (list(t.dims), t.data_type) for t in config.output}
        expect(inputs == {"LOGITS": [10]}, f"postprocess inputs are {inputs}; expected one input LOGITS with dims [10]")
        expect("LABEL" in outputs and outputs["LABEL"][1] == model_config_pb2.TYPE_STRING,
               f"postprocess outputs are {list(outputs)}; expected LABEL with data_type TYPE_STRING")

    def ensemble_config() -> None:
        problems = validate_model(grading.found["repo"] / ENSEMBLE)
        expect(not problems, f"{ENSEMBLE}: {problems[0] if problems else ''}")
        order = data_flow_order(read_config(grading.found["repo"] / ENSEMBLE))
        expect(order == ["preprocess", "digits", "postprocess"],
               f"following the tensors, the steps run as {order}; expected preprocess -> digits -> postprocess "
               "(each step's input_map names the tensor the step before it writes in its output_map)")

    def loads() -> None:
        serve_for_grading(grading, grading.found["repo"], work, ENSEMBLE)

    def names_correct() -> None:
        pngs = write_digit_pngs(work / "pngs", count=8)
        names = _names(grading.server, [p for p, _ in pngs])
        expected = [DIGIT_CLASSES[str(label)] for _, label in pngs]
        expect(names == expected, f"got {names}, expected {expected}")

    def single_requests() -> None:
        pngs = write_digit_pngs(work / "pngs", count=3)
        for path, label in pngs:
            names = _names(grading.server, [path])
            expect(names == [DIGIT_CLASSES[str(label)]], f"one image of a {label} gave {names}")
        client = grading.server.http_client()

        def counted() -> int:
            return int(client.get_inference_statistics("postprocess")["model_stats"][0]["inference_count"])

        deadline = time.monotonic() + 10   # Triton updates statistics just after it answers
        while counted() < 11 and time.monotonic() < deadline:
            time.sleep(0.1)
        expect(counted() >= 11, f"the postprocess step's statistics count {counted()} of the 11 images sent: is "
               "postprocess a step of the ensemble?")

    checks = [RUBRIC.check("4.1", "write_postprocess and write_ensemble write their folders", written),
              RUBRIC.check("4.2", "postprocess config: LOGITS [10] in, LABEL TYPE_STRING out, valid", postprocess_config, ("4.1",)),
              RUBRIC.check("4.3", "ensemble config: data flows preprocess -> digits -> postprocess, maps valid",
                           ensemble_config, ("4.1",)),
              RUBRIC.check("4.4", "Triton loads the ensemble and its steps", loads, ("4.1",)),
              RUBRIC.check("4.5", "a batch of 8 PNGs comes back as the right class names", names_correct, ("4.4",)),
              RUBRIC.check("4.6", "single-image requests work and the step statistics count them", single_requests, ("4.4",))]
    return grading.run(checks, show=show)
