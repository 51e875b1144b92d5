"""Hostile input against a real TorchServe: each bad request gets its own 4xx with an ASCII message
that says what was wrong, its good neighbour in the same batch is answered, and the worker survives."""

from __future__ import annotations

import pytest

from course_utils.archiver import archive_model, handler_file, save_torchscript, write_index_to_name
from course_utils.data import DIGIT_CLASSES, write_digit_pngs
from course_utils.hostile_inputs import churn_hostile_inputs, digit_hostile_inputs, probe
from course_utils.models import load_digit_cnn
from course_utils.servers.torchserve import ModelSettings, TorchServe


# What each input must get, and a word its message must contain.
CHURN_EXPECTED = {
    "non-ASCII value": (400, "\\xe9"), "non-ASCII key": (400, "missing feature"), "emoji": (400, "\\U0001f600"),
    "huge integer 10**400": (400, "float32 range"), "integer of 5000 digits": (400, "more than 4300 digits"),
    "NaN": (400, "finite"), "Infinity": (400, "finite"), "-Infinity": (400, "finite"),
    "beyond float32 (1e39)": (400, "float32 range"), "nested 100,000 deep": (400, "nested too deeply"),
    "list inside the list": (400, "must be a number"), "string for a number": (400, "must be a number"),
    "boolean for a number": (400, "must be a number"), "JSON null": (400, "empty request body"),
    "wrong length": (400, "expected 4 numbers"), "empty list": (400, "expected 4 numbers"),
    "object without data": (400, "missing feature"), "empty body": (400, "empty request body"),
    "not JSON": (400, "not valid JSON"), "invalid UTF-8": (400, "not valid JSON"),
    "2 MB body": (413, ""),
}
DIGIT_EXPECTED = {
    "not an image": (400, "could not decode"), "truncated PNG": (400, "could not decode"),
    "12000x12000 PNG (144 MP)": (413, "at most 4000000"), "header claims 40000x40000": (413, "decompression bomb"),
    "zTXt bomb (50 MB of text)": (400, "could not decode"), "iCCP bomb (50 MB profile)": (400, "could not decode"),
    "base64 of garbage": (400, "base64"), "JSON number": (400, "expected image bytes"),
}


@pytest.fixture(scope="module")
def server(churn_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    store = folder / "store"
    archive_model("churn", churn_files["model"], churn_files["handler"], store,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    digit_pt = save_torchscript(load_digit_cnn().model, folder / "digits.pt")
    labels = write_index_to_name(DIGIT_CLASSES, folder)
    archive_model("digits", digit_pt, handler_file("digit_handler"), store,
                  extra_files=[handler_file("batch_safe"), labels])
    batched = ModelSettings(batch_size=2, max_batch_delay_ms=1000)
    with TorchServe(store, folder / "server", models=["churn.mar", "digits.mar"],
                    settings={"churn": batched, "digits": batched}) as running:
        running.png = write_digit_pngs(folder / "pngs", count=1)[0][0].read_bytes()
        yield running


def check_rows(rows: list[dict], expected: dict[str, tuple[int, str]]) -> None:
    assert [row["input"] for row in rows] == list(expected)
    for row in rows:
        status, word = expected[row["input"]]
        assert (row["status"], row["neighbour"], row["same worker"]) == (status, 200, True), row
        assert word in row["message"] and row["message"].isascii(), row


@pytest.mark.slow
def test_every_hostile_json_input_fails_alone_with_a_4xx_that_says_why(server):
    good = {"json": {"data": [24, 80.5, 2, 12]}}
    check_rows(probe(server, "churn", churn_hostile_inputs(), good), CHURN_EXPECTED)


@pytest.mark.slow
def test_every_hostile_image_fails_alone_and_no_image_is_decoded_past_the_pixel_cap(server):
    check_rows(probe(server, "digits", digit_hostile_inputs(), {"data": server.png}), DIGIT_EXPECTED)


@pytest.mark.slow
def test_the_triton_preprocessor_answers_each_hostile_image_with_400_and_keeps_serving(tmp_path):
    """Triton's Python backend: every bad image gets INVALID_ARG (HTTP 400); the stub survives and serves."""
    import numpy as np
    import psutil
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from course_utils.models import load_digit_cnn
    from course_utils.pipelines import png_batch, write_pipeline_steps
    from course_utils.servers.triton import TritonServer

    write_pipeline_steps(tmp_path / "repo", load_digit_cnn().model)
    good = png_batch(write_digit_pngs(tmp_path / "pngs", count=1)[0][:1])
    images = {name: body["data"] for name, body in digit_hostile_inputs().items() if "data" in body}
    with TritonServer(tmp_path / "repo", tmp_path / "server", models=["preprocess"]) as server:
        client = server.http_client()

        def infer(batch: np.ndarray):
            request = httpclient.InferInput("IMAGE_BYTES", list(batch.shape), "BYTES")
            request.set_data_from_numpy(batch)
            return client.infer("preprocess", [request])

        stubs = sorted(p.pid for p in psutil.Process(server.pids()[0]).children(recursive=True))
        for name, data in images.items():
            with pytest.raises(InferenceServerException) as raised:
                infer(np.array([[data]], dtype=np.object_))
            assert raised.value.status() == "400", (name, raised.value.status(), raised.value.message())
            assert raised.value.message().isascii() and "IMAGE_BYTES" in raised.value.message(), name
            assert infer(good).as_numpy("PIXELS").shape == (1, 1, 8, 8), f"not serving after {name}"
        assert sorted(p.pid for p in psutil.Process(server.pids()[0]).children(recursive=True)) == stubs
        client.close()


# What the served churn model (the Python-backend serving copy, runtime_model.py) answers.
# 500: tritonserver 2.51's own JSON parser answers what it cannot parse with 500, before any model
# code runs; the message still says what was wrong.
TRITON_EXPECTED = {
    "non-ASCII value": (500, "non-number"), "huge integer 10**400": (500, "Number too big"),
    "NaN": (400, "NaN or infinite"), "Infinity": (400, "NaN or infinite"),
    "beyond float32 (1e39)": (400, "NaN or infinite"), "string for a number": (500, "non-number"),
    "boolean for a number": (500, "non-number"), "wrong length": (400, "unexpected shape"),
    "fewer values than the shape": (500, "Shape does not match"), "wrong datatype": (400, "data-type is 'INT64'"),
    "batch over max_batch_size": (400, "batch-size must be <= 8"), "unknown input name": (400, "unexpected inference input"),
    "nested 1,000 deep": (500, "Shape does not match"), "no inputs": (500, "'inputs'"),
    "empty body": (400, "byte size mismatch"), "not JSON": (500, "Invalid value"), "invalid UTF-8": (500, "Invalid value"),
}


@pytest.mark.slow
def test_the_served_churn_model_refuses_each_hostile_request_alone_and_its_stub_survives(tmp_path):
    """Triton's Python backend (the CPU serving copy): NaN/Inf get 400 from the model; the neighbour is served."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    import torch

    from course_utils.hostile_inputs import triton_churn_hostile_inputs
    from course_utils.models import load_churn_model
    from course_utils.onnx_tools import export_onnx
    from course_utils.servers.triton import TritonServer
    from course_utils.triton_config import io_tensor, model_config, write_config

    repo = tmp_path / "repo"
    trained = load_churn_model()
    export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]), repo / "churn" / "1" / "model.onnx")
    write_config(repo / "churn", model_config(
        "churn", platform="onnxruntime_onnx", max_batch_size=8, instance_count=1,
        inputs=[io_tensor("input", "TYPE_FP32", [4])], outputs=[io_tensor("output", "TYPE_FP32", [2])],
        dynamic_batching={"max_queue_delay_microseconds": 50_000}))   # the bad and the good request share a batch
    good = b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [24, 80.5, 2, 12]}]}'
    with TritonServer(repo, tmp_path / "server", models=["churn"]) as server:
        url = f"http://{server.http_url}/v2/models/churn/infer"
        stubs = server.stub_processes("churn")
        rows = {}
        for name, body in triton_churn_hostile_inputs().items():
            with ThreadPoolExecutor(2) as pool:
                bad, neighbour = pool.map(lambda data: requests.post(url, data=data, timeout=30), [body, good])
            rows[name] = (bad.status_code, bad.json()["error"], neighbour.status_code)
        assert server.stub_processes("churn") == stubs and all(s.is_running() for s in stubs)
        statistics = requests.get(f"http://{server.http_url}/v2/models/churn/stats", timeout=10).json()
    assert list(rows) == list(TRITON_EXPECTED)
    for name, (status, message, neighbour) in rows.items():
        expected_status, word = TRITON_EXPECTED[name]
        assert (status, neighbour) == (expected_status, 200) and word in message and message.isascii(), (name, rows[name])
    counts = statistics["model_stats"][0]
    assert counts["execution_count"] < counts["inference_count"], "some bad and good requests shared a batch"
