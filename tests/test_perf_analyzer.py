"""The real perf_analyzer runs against both servers and its CSV becomes a table."""

import json

import pytest
import torch

from course_utils.perf_analyzer import PerfAnalyzerError, perf_analyzer_command, run_perf_analyzer, torchserve_input_data
from course_utils.servers.triton import TritonServer
from course_utils.triton_config import io_tensor, model_config, write_config



def test_command_rejects_an_unknown_protocol(tmp_path):
    with pytest.raises(ValueError, match="'http' or 'grpc'"):
        perf_analyzer_command("m", "127.0.0.1:1", tmp_path / "x.csv", protocol="https")


def test_window_ms_asks_for_time_windows_instead_of_a_request_count(tmp_path):
    counted = perf_analyzer_command("m", "127.0.0.1:1", tmp_path / "x.csv", request_count=300)
    timed = perf_analyzer_command("m", "127.0.0.1:1", tmp_path / "x.csv", window_ms=500)
    assert counted[counted.index("--measurement-mode") + 1] == "count_windows" and "300" in counted
    assert timed[timed.index("--measurement-mode") + 1] == "time_windows"
    assert timed[timed.index("--measurement-interval") + 1] == "500" and "--measurement-request-count" not in timed


@pytest.mark.slow
def test_perf_analyzer_measures_triton_over_grpc(tmp_path):
    from course_utils.models import load_churn_model
    from course_utils.onnx_tools import export_onnx

    repo = tmp_path / "repo"
    trained = load_churn_model()
    export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]), repo / "churn" / "1" / "model.onnx")
    write_config(repo / "churn", model_config("churn", platform="onnxruntime_onnx", max_batch_size=8,
                                              inputs=[io_tensor("input", "TYPE_FP32", [4])],
                                              outputs=[io_tensor("output", "TYPE_FP32", [2])]))
    with TritonServer(repo, tmp_path / "server", models=["churn"]) as server:
        table = run_perf_analyzer("churn", server.grpc_url, tmp_path / "perf", concurrencies=(1, 2),
                                  protocol="grpc", request_count=200, label="triton")
        with pytest.raises(PerfAnalyzerError, match="exited with"):
            run_perf_analyzer("no_such_model", server.http_url, tmp_path / "perf", concurrencies=(1,))
        never_agrees = run_perf_analyzer("churn", server.http_url, tmp_path / "perf0", concurrencies=(1,),
                                         window_ms=100, stability_percentage=0)   # 100 ms windows: 10 of them, 1 s
    assert list(table.concurrency) == [1, 2] and set(table.setup) == {"triton"}
    assert not never_agrees.stable.iloc[0]  # measured again with a wide threshold, and marked
    assert (table.throughput > 0).all() and (table.p99_ms >= table.p50_ms).all()


@pytest.mark.slow
def test_perf_analyzer_measures_torchserve_with_its_token(churn_files, tmp_path):
    from course_utils.archiver import archive_model
    from course_utils.servers.torchserve import TorchServe

    store = tmp_path / "store"
    store.mkdir()
    archive_model("churn", churn_files["model"], churn_files["handler"], store,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"data": [0.5, 0.2, 0.1, 0.9]}))
    with TorchServe(store, tmp_path / "ts", models=["churn.mar"]) as server:
        table = run_perf_analyzer("churn", server.inference_url.removeprefix("http://"), tmp_path / "perf",
                                  concurrencies=(1,), service_kind="torchserve", request_count=200,
                                  input_data=torchserve_input_data(body, tmp_path / "input.json"),
                                  extra=["-H", f"Authorization:Bearer {server.key('inference')}"])
        with pytest.raises(PerfAnalyzerError, match="error code 400|401|failed"):
            run_perf_analyzer("churn", server.inference_url.removeprefix("http://"), tmp_path / "perf2",
                              concurrencies=(1,), service_kind="torchserve", request_count=50,
                              input_data=tmp_path / "input.json")  # no token: refused
    assert table.throughput.iloc[0] > 0
