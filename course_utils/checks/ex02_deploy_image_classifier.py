"""Graders for ex02_deploy_image_classifier (the source material's problem 1):
export the digit CNN, archive it, serve it, predict PNG files and scale workers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import requests
import torch

from ..archiver import archive_contents, save_torchscript, write_index_to_name
from ..data import DIGIT_CLASSES, write_digit_pngs
from ..machinery.grading import Fail, GradingSession, Rubric, Verdict, expect, run_checks
from ..models import Trained, load_digit_cnn
from ..paths import empty_dir
from ..servers.torchserve import TorchServe, wait_for_workers
from .hints import mismatch_hint

_TRAINED: list[Trained] = []

# check id -> points: the answer key
RUBRIC = Rubric({"2.1": 2, "2.2": 1, "2.3": 2, "2.4": 2,
                 "2.5": 2, "2.6": 3, "2.7": 2})


def _reference_model() -> Trained:
    """The trained digit CNN (the shipped weights, loaded once per kernel)."""
    if not _TRAINED:
        _TRAINED.append(load_digit_cnn())
    return _TRAINED[0]


def grade_export(export_torchscript: Callable, work: Path, show: bool = True) -> list[Verdict]:
    """Part 1: export_torchscript(model, path) writes a TorchScript file that matches the model.

    Introduced in ex02_deploy_image_classifier.
    """
    work = empty_dir(work)
    trained = _reference_model()
    target = work / "digits.pt"

    def exported() -> None:
        result = export_torchscript(trained.model, target)
        expect(Path(target).is_file(), f"no file at {target}: save the scripted model to the `path` argument")
        expect(result is not None and Path(result) == target, f"return the path you saved to ({target}), got {result!r}")
        try:
            torch.jit.load(str(target))
        except RuntimeError as err:
            raise Fail(f"torch.jit.load cannot read the file ({str(err).splitlines()[0]}): "
                       "save with torch.jit.script(model).save(path), not torch.save") from None

    def same_outputs() -> None:
        loaded = torch.jit.load(str(target))
        x = torch.from_numpy(trained.data.x_test[:64])
        with torch.inference_mode():
            difference = float((loaded(x) - trained.model(x)).abs().max())
        expect(difference < 1e-5, f"outputs differ from the eager model by {difference:.2e}: "
               f"{mismatch_hint(trained.model, 'save')}")

    checks = [RUBRIC.check("2.1", "export_torchscript writes a loadable TorchScript file", exported),
              RUBRIC.check("2.2", "the TorchScript model gives the eager model's outputs", same_outputs, ("2.1",))]
    return run_checks(checks, show=show)


def grade_archive(build_archive: Callable, work: Path, show: bool = True) -> list[Verdict]:
    """Part 2: build_archive(model_file, labels_file, export_path) makes a complete digits.mar.

    Introduced in ex02_deploy_image_classifier.
    """
    work = empty_dir(work)
    model_file = save_torchscript(_reference_model().model, work / "digits.pt")
    labels = write_index_to_name(DIGIT_CLASSES, work)
    grading = GradingSession()

    def archived() -> None:
        mar = build_archive(model_file, labels, work / "store")
        expect(mar is not None and Path(mar).is_file(), f"build_archive returned {mar!r}, which is not a .mar file: "
               "return export_path / 'digits.mar'")
        grading.found["names"], grading.found["manifest"] = archive_contents(Path(mar))

    def complete() -> None:
        names, manifest = grading.found["names"], grading.found["manifest"]
        model = manifest.get("model", {})
        expect(model.get("modelName") == "digits", f"model name is {model.get('modelName')!r}, expected 'digits'")
        expect(model.get("handler") == "digit_handler.py",
               f"handler is {model.get('handler')!r}: use --handler with the course's digit_handler.py")
        missing = [f for f in ["digits.pt", "batch_safe.py", "index_to_name.json"] if f not in names]
        expect(not missing, f"the archive lacks {missing}: pass them with --serialized-file / --extra-files")

    checks = [RUBRIC.check("2.3", "build_archive creates digits.mar with torch-model-archiver", archived),
              RUBRIC.check("2.4", "the archive holds the model, the handler, batch_safe.py and index_to_name.json",
                           complete, ("2.3",))]
    return run_checks(checks, show=show)


def grade_serving(build_archive: Callable, predict_digit: Callable, scale_workers: Callable, work: Path,
                  show: bool = True) -> list[Verdict]:
    """Part 3: the archive serves; predict_digit answers like the model; scale_workers gives 2 READY workers.

    Introduced in ex02_deploy_image_classifier.
    """
    work = empty_dir(work)
    trained = _reference_model()
    model_file = save_torchscript(trained.model, work / "digits.pt")
    labels = write_index_to_name(DIGIT_CLASSES, work)
    pngs = write_digit_pngs(work / "pngs", count=10)
    grading = GradingSession()

    def served() -> None:
        mar = build_archive(model_file, labels, work / "store")
        server = TorchServe(work / "store", work / "server", models=[Path(mar).name], startup_timeout_s=60)
        try:
            grading.serve(server)
        except (TimeoutError, RuntimeError) as err:
            raise Fail(f"the model never became READY: {str(err).splitlines()[0]}") from None

    def predictions() -> None:
        server = grading.server
        with torch.inference_mode():
            images = torch.stack([torch.from_numpy(np.asarray(trained.data.x_test[i])) for i in range(len(pngs))])
            wanted = trained.model(images).argmax(dim=1).tolist()
        got = [predict_digit(server.inference_url, server.headers("inference"), path) for path, _ in pngs]
        expect(all(isinstance(g, int) for g in got), f"predict_digit must return an int class id, got {got[:3]}...")
        expect(got == wanted, f"predicted {got}, the model says {wanted}: send the PNG bytes as the request body "
               "and return predictions[0]['class_id']")

    def scaled() -> None:
        server = grading.server
        scale_workers(server.management_url, server.headers("management"), "digits", 2)
        asked = server.management_get("models/digits").json()[0]["minWorkers"]   # set once TorchServe accepts the PUT
        if asked < 2:   # no need to wait a minute for workers nobody asked for
            raise Fail(f"the model still asks for min_worker={asked}: PUT /models/digits with min_worker=2 "
                       "(and synchronous=true) on the management API")
        try:
            wait_for_workers(server, "digits", 2, timeout_s=60)
        except TimeoutError:
            raise Fail("the model does not have 2 READY workers: PUT /models/digits with min_worker=2 "
                       "(and synchronous=true) on the management API") from None

    checks = [RUBRIC.check("2.5", "the archive serves in TorchServe (a READY worker)", served),
              RUBRIC.check("2.6", "predict_digit returns the model's class for 10 PNG files", predictions, ("2.5",)),
              RUBRIC.check("2.7", "scale_workers brings the model to 2 READY workers", scaled, ("2.5",))]
    return grading.run(checks, show=show)
