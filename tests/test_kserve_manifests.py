"""The course's KServe manifests (kserve/*.yaml) against KServe's own InferenceService schema.

The schema comes from the KServe Python SDK (`make kserve` installs tools/kserve.lock into .venv-kserve/; its
pins conflict with the course's lock) and tools/check_inferenceservice.py walks each manifest through the SDK's
generated models. Without .venv-kserve these tests are skipped, saying so; CI installs it and sets
COURSE_REQUIRE_KSERVE=1, so there a missing SDK fails instead.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from course_utils.paths import REPO_ROOT

KSERVE_PYTHON = REPO_ROOT / ".venv-kserve" / "bin" / "python"
CHECK = REPO_ROOT / "tools" / "check_inferenceservice.py"
MANIFESTS = sorted((REPO_ROOT / "kserve").glob("*.yaml"))

if not KSERVE_PYTHON.exists():
    if os.environ.get("COURSE_REQUIRE_KSERVE"):
        raise RuntimeError(f"{KSERVE_PYTHON} is missing and COURSE_REQUIRE_KSERVE is set: run `make kserve`")
    pytest.skip("the KServe SDK is not installed: `make kserve` installs it into .venv-kserve/",
                allow_module_level=True)


def check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(KSERVE_PYTHON), str(CHECK), *map(str, paths)], capture_output=True, text=True,
                          timeout=120)


def test_every_course_manifest_matches_kserves_schema():
    assert {p.name for p in MANIFESTS} >= {"churn_canary.yaml", "digits_capstone.yaml"}
    result = check(*MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok: {len(MANIFESTS)} file(s)" in result.stdout


def test_the_check_names_each_mistake_it_finds(tmp_path):
    manifest = tmp_path / "wrong.yaml"
    manifest.write_text("""\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: digits}
spec:
  predictor:
    canaryTrafficPercnt: 10
    minReplicas: "2"
    model:
      modelFormat: {name: triton}
      storageURI: s3://models/digits
      resources: {limits: {cpu: 2}}
    containers:
      - image: nvcr.io/nvidia/tritonserver
---
apiVersion: serving.kubeflow.org/v1alpha2
kind: InferenceService
metadata: {name: old}
""")
    result = check(manifest)
    assert result.returncode == 1
    problems = result.stdout.splitlines()
    expected = ["spec.predictor.canaryTrafficPercnt: V1beta1PredictorSpec has no field 'canaryTrafficPercnt' "
                "(did you mean 'canaryTrafficPercent'?)",
                "spec.predictor.minReplicas: expected int, got str '2'",
                "spec.predictor.model.storageURI: V1beta1ModelSpec has no field 'storageURI' "
                "(did you mean 'storageUri'?)",
                "spec.predictor.model.resources.limits.cpu: expected str, got int 2",
                "spec.predictor.containers[0]: 1 validation error for V1Container name Field required",
                "apiVersion/kind are 'serving.kubeflow.org/v1alpha2'/'InferenceService'"]
    for want in expected:
        assert any(want in line for line in problems), (want, problems)
    assert len(problems) == len(expected), problems


def test_lesson_10_shows_the_checked_manifest():
    lesson = json.loads((REPO_ROOT / "notebooks" / "10_safe_rollout.ipynb").read_text())
    code = "".join("".join(cell["source"]) for cell in lesson["cells"] if cell["cell_type"] == "code")
    assert '"churn_canary.yaml"' in code and "apiVersion: serving.kserve.io" not in code
