"""Lesson 17's BLS cascade on a real Triton: its decisions, hostile input, and a called model that is gone.

The cascade (course_utils/triton_models/digit_cascade.py) refuses input the gate cannot judge with a 400
that says why, for that request only, while neighbours are answered and no stub dies; when the CNN it calls
is unloaded, the requests that needed it fail with the CNN's own message, the others are still answered,
and reloading the CNN heals it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from course_utils.cascade import cascade_table, digits_input_data
from course_utils.models import load_digit_cnn, load_digit_linear


def test_the_cascade_table_spans_the_cheap_and_the_expensive_model(tmp_path):
    cheap, expensive = load_digit_linear(), load_digit_cnn()
    table = cascade_table(cheap.model, expensive.model, cheap.data.x_test, cheap.data.y_test, [0.0, 0.8, 1.01])
    assert table["sent to the expensive model"].tolist()[::2] == [0.0, 1.0]
    assert table["accuracy"].tolist()[::2] == pytest.approx([cheap.test_accuracy, expensive.test_accuracy])
    assert 0 < table["sent to the expensive model"][1] < 1
    data = json.loads(digits_input_data(tmp_path / "d.json", cheap.data.x_test[:3]).read_text())["data"]
    assert np.array(data[2]["input__0"]["content"], dtype=np.float32).tolist() == cheap.data.x_test[2].ravel().tolist()


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from course_utils.cascade import write_cascade
    from course_utils.pipelines import write_digit_classifier
    from course_utils.servers.triton import TritonServer

    folder = tmp_path_factory.mktemp("bls")
    write_digit_classifier(folder / "repo", load_digit_cnn().model)
    write_cascade(folder / "repo", load_digit_linear().model, 0.8)
    with TritonServer(folder / "repo", folder / "server", models=["digits", "digit_cascade"]) as server:
        yield server


def classify(server, images: np.ndarray, datatype: str = "FP32"):
    """The cascade's answer over HTTP with binary tensors (JSON cannot carry NaN): (status, argmaxes or message, EXPERT)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    pixels = httpclient.InferInput("input__0", list(images.shape), datatype)
    pixels.set_data_from_numpy(images.astype(np.float64 if datatype == "FP64" else np.float32), binary_data=True)
    try:
        answer = httpclient.InferenceServerClient(server.http_url).infer("digit_cascade", [pixels])
    except InferenceServerException as error:
        return int(error.status()), error.message(), None
    return 200, answer.as_numpy("LOGITS").argmax(axis=1).tolist(), answer.as_numpy("EXPERT").ravel().tolist()


@pytest.mark.slow
def test_hostile_requests_fail_alone_with_a_400_that_says_why(cascade):
    import requests

    x = load_digit_linear().data.x_test
    nan = x[:2].copy()
    nan[1, 0, 2, 5] = np.nan
    hostile = {
        "NaN pixel": lambda: classify(cascade, nan),
        "infinite pixel": lambda: classify(cascade, np.full((1, 1, 8, 8), np.inf)),
        "negative pixel": lambda: classify(cascade, x[:1] - 1),
        "raw gray levels": lambda: classify(cascade, x[:1] * 16 + 1),
        "FP64": lambda: classify(cascade, x[:1], "FP64"),
        "wrong shape": lambda: classify(cascade, np.zeros((1, 1, 8, 9))),
        "batch of 9": lambda: classify(cascade, np.zeros((9, 1, 8, 8))),
    }
    words = {"FP64": "FP64", "wrong shape": "shape", "batch of 9": "batch"}
    neighbour = classify(cascade, x[:8])
    pids = cascade.pids()
    for case, call in hostile.items():
        with ThreadPoolExecutor(2) as pool:
            bad, good = pool.submit(call), pool.submit(classify, cascade, x[:8])
            (status, message, _), good = bad.result(), good.result()
        assert status == 400, (case, status, message)
        assert words.get(case, "in [0, 1]").lower() in message.lower(), (case, message)
        assert good == neighbour, case
    no_inputs = requests.post(f"http://{cascade.http_url}/v2/models/digit_cascade/infer", data=b'{"inputs": []}', timeout=30)
    assert no_inputs.status_code == 400 and "input" in no_inputs.json()["error"]
    assert cascade.pids() == pids and classify(cascade, x[:8]) == neighbour


@pytest.mark.slow
def test_a_called_model_that_is_gone_fails_only_the_requests_that_need_it(cascade):
    x = load_digit_linear().data.x_test[:64]
    experts = sum((classify(cascade, x[i:i + 8])[2] for i in range(0, len(x), 8)), [])
    sure, unsure = x[[not e for e in experts]][:1], x[[bool(e) for e in experts]][:1]
    assert len(sure) == len(unsure) == 1
    cascade.unload("digits")
    try:
        failed, served = classify(cascade, unsure), classify(cascade, sure)
    finally:
        cascade.load("digits")
    assert failed[0] == 500 and "'digits'" in failed[1] and "not ready" in failed[1], failed
    assert served[0] == 200 and served[2] == [False]
    assert classify(cascade, unsure)[2] == [True]
