"""The course's KServe manifests (kserve/*.yaml) against KServe's own InferenceService schema.

The schema comes from the KServe Python SDK (`make kserve` installs tools/kserve.lock into .venv-kserve/; its
pins conflict with the course's lock) and tools/check_inferenceservice.py walks each manifest through the SDK's
generated models. Without .venv-kserve the checks are skipped, saying so; CI installs it and sets
COURSE_REQUIRE_KSERVE=1, so there a missing SDK fails instead.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from course_utils.paths import REPO_ROOT

KSERVE_VENV = REPO_ROOT / ".venv-kserve"
CHECK = REPO_ROOT / "tools" / "check_inferenceservice.py"
MANIFESTS = sorted((REPO_ROOT / "kserve").glob("*.yaml"))


@pytest.fixture
def check():
    """Run the checker with the SDK's interpreter: check(*paths) -> CompletedProcess."""
    if not (KSERVE_VENV / ".installed").exists():   # make kserve's stamp: an interrupted install is not installed
        if os.environ.get("COURSE_REQUIRE_KSERVE") == "1":
            pytest.fail(f"{KSERVE_VENV} is not installed and COURSE_REQUIRE_KSERVE=1: run `make kserve`")
        pytest.skip("the KServe SDK is not installed: `make kserve` installs it into .venv-kserve/")
    return lambda *paths: subprocess.run([str(KSERVE_VENV / "bin" / "python"), str(CHECK), *map(str, paths)],
                                         capture_output=True, text=True, timeout=120)


def test_every_course_manifest_matches_kserves_schema(check):
    documents = [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]
    names = {d["metadata"]["name"]: d["spec"]["predictor"]["model"]["runtime"] for d in documents}
    assert names == {"churn": "kserve-tritonserver", "digits-triton": "kserve-tritonserver",
                     "digits-torchserve": "kserve-torchserve"}
    result = check(*MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok: {len(documents)} InferenceService(s) in {len(MANIFESTS)} file(s)" in result.stdout
    assert "note:" not in result.stdout   # every field of the course's manifests is checked


def test_the_check_names_each_mistake_it_finds(check, tmp_path):
    manifest = tmp_path / "wrong.yaml"
    manifest.write_text("""\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: digits, lables: {app: digits}}
spec:
  predictor:
    canaryTrafficPercnt: 10
    minReplicas: "2"
    storageUri: s3://models/digits
    deploymentStrategy: {type: RollingUpdate}
    model:
      modelFormat: {name: triton}
      args: {summary: true}
      resources: {limits: {cpu: 2}}
    containers:
      - image: nvcr.io/nvidia/tritonserver
---
apiVersion: serving.kubeflow.org/v1alpha2
kind: InferenceService
metadata: {name: old}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: pasted}
spec: {predictor: {model: {modelFormat: {name: triton}}}}
status: {url: http://digits.example.com}
""")
    result = check(manifest)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if not line.startswith("note:")]
    expected = ["metadata.lables: V1ObjectMeta has no field 'lables' (did you mean 'labels'?)",
                "spec.predictor.canaryTrafficPercnt: V1beta1PredictorSpec has no field 'canaryTrafficPercnt' "
                "(did you mean 'canaryTrafficPercent'?)",
                "spec.predictor.minReplicas: expected int, got str '2'",
                "spec.predictor.storageUri: V1beta1PredictorSpec has no field 'storageUri' (it belongs under model)",
                "spec.predictor.model.args: expected a list, got dict",
                "spec.predictor.model.resources.limits.cpu: expected str, got int 2 (quote it: \"2\")",
                "spec.predictor.containers[0]: 1 validation error for V1Container name Field required",
                "apiVersion/kind are 'serving.kubeflow.org/v1alpha2'/'InferenceService'",
                "status: KServe's controller writes it"]
    for want in expected:
        assert any(want in line for line in problems), (want, problems)
    assert len(problems) == len(expected), problems
    assert "note: spec.predictor.deploymentStrategy: not checked" in result.stdout


def test_an_empty_or_missing_file_is_not_ok(check, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    result = check(tmp_path / "empty.yaml", tmp_path / "missing.yaml")
    assert result.returncode == 1
    assert "no YAML document" in result.stdout and "missing.yaml" in result.stdout


def test_lesson_10_shows_the_checked_manifest():
    lesson = json.loads((REPO_ROOT / "notebooks" / "10_safe_rollout.ipynb").read_text())
    code = "".join("".join(cell["source"]) for cell in lesson["cells"] if cell["cell_type"] == "code")
    assert '"churn_canary.yaml"' in code and "apiVersion: serving.kserve.io" not in code
