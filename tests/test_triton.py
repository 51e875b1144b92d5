"""The embedded tritonserver: serving copy, start/stop hygiene, load errors, external mode."""

import numpy as np
import psutil
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from course_utils.servers.triton_serving_copy import serving_copy
from course_utils.servers.triton import ModelLoadError, TritonServer
from course_utils.triton_config import io_tensor, model_config, read_config, write_config



@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    from course_utils.models import load_churn_model
    from course_utils.onnx_tools import export_onnx

    repo = tmp_path_factory.mktemp("triton") / "repo"
    trained = load_churn_model()
    export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]), repo / "churn" / "1" / "model.onnx")
    write_config(repo / "churn", model_config(
        "churn", platform="onnxruntime_onnx", max_batch_size=8, instance_count=2, instance_kind="KIND_GPU",
        inputs=[io_tensor("input", "TYPE_FP32", [4])], outputs=[io_tensor("output", "TYPE_FP32", [2])],
        dynamic_batching={"max_queue_delay_microseconds": 100}))
    return repo, trained


def test_serving_copy_keeps_the_contract_and_says_what_changed(repository, tmp_path):
    repo, _ = repository
    notes = serving_copy(repo, tmp_path / "served")
    served = read_config(tmp_path / "served" / "churn")
    original = read_config(repo / "churn")
    assert served.backend == "python" and served.platform == ""
    assert (served.input, served.output, served.max_batch_size) == (original.input, original.output, original.max_batch_size)
    assert served.instance_group[0].count == 2 and served.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert any("KIND_GPU -> KIND_CPU" in n for n in notes) and any("python backend" in n for n in notes)
    assert (tmp_path / "served" / "churn" / "1" / "model.py").is_file()
    assert read_config(repo / "churn").platform == "onnxruntime_onnx"  # the source is untouched


@pytest.mark.slow
def test_start_infer_stop_leaves_nothing_behind(repository, tmp_path):
    import tritonclient.http as httpclient

    repo, trained = repository
    with TritonServer(repo, tmp_path / "server", models=["churn"]) as server:
        pids = server.pids()
        assert len(pids) >= 2  # tritonserver + at least one stub
        x = trained.data.x_test[:5]
        request = httpclient.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        result = server.http_client().infer("churn", [request]).as_numpy("output")
        with torch.inference_mode():
            assert np.allclose(result, trained.model(torch.from_numpy(x)).numpy(), atol=1e-5)
        regions = server.shm_regions()
        assert regions
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert not any(region.exists() for region in regions)


@pytest.mark.slow
def test_load_error_quotes_the_server(repository, tmp_path):
    repo, _ = repository
    with TritonServer(repo, tmp_path / "server") as server:
        bad = repo / "broken"
        (bad / "1").mkdir(parents=True, exist_ok=True)
        (bad / "config.pbtxt").write_text('name: "broken"\nmax_batch_sise: 4\n')
        with pytest.raises(ModelLoadError, match="could not load 'broken'"):
            server.load("broken")
        with pytest.raises(ModelLoadError, match="not found|failed"):
            server.load("no_such_model")
    import shutil
    shutil.rmtree(bad)


@pytest.mark.slow
def test_external_mode_uses_triton_url_and_launches_nothing(repository, tmp_path, monkeypatch):
    repo, _ = repository
    with TritonServer(repo, tmp_path / "embedded", models=["churn"]) as embedded:
        monkeypatch.setenv("TRITON_URL", embedded.http_url)
        monkeypatch.setenv("TRITON_CONTROL_KEY", embedded.control_key)   # the stack's TRITON_CONTROL_KEY
        monkeypatch.setenv("TRITON_GRPC_URL", embedded.grpc_url)
        monkeypatch.setenv("TRITON_METRICS_URL", embedded.metrics_url.removesuffix("/metrics"))
        external = TritonServer(repo, tmp_path / "external")
        with external:
            assert external.process is None and external.pids() == []
            assert external.is_ready("churn")
            assert external.grpc_client().is_model_ready("churn")
        assert embedded.is_ready("churn")  # stopping the external handle left the server alone


def test_bad_triton_url_is_explained(repository, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_URL", "no-port-here")
    with pytest.raises(ValueError, match="host:port"):
        TritonServer(repository[0], tmp_path)


def test_serving_copy_refuses_to_overwrite_the_repository(repository):
    repo, _ = repository
    with pytest.raises(ValueError, match="outside the repository"):
        serving_copy(repo, repo)


@pytest.mark.slow
def test_external_mode_copies_the_notebooks_model_folder_into_triton_repository(tmp_path, monkeypatch):
    """TRITON_URL + TRITON_REPOSITORY pointed at an embedded server: the docker stack's path, without Docker."""
    from course_utils.models import load_digit_cnn
    from course_utils.pipelines import write_pipeline_steps

    empty = tmp_path / "server_repo"
    empty.mkdir()
    lesson_repo = tmp_path / "lesson_repo"
    write_pipeline_steps(lesson_repo, load_digit_cnn().model)
    with TritonServer(empty, tmp_path / "embedded") as embedded:
        monkeypatch.setenv("TRITON_URL", embedded.http_url)
        monkeypatch.setenv("TRITON_CONTROL_KEY", embedded.control_key)   # the stack's TRITON_CONTROL_KEY
        monkeypatch.setenv("TRITON_REPOSITORY", str(embedded.served_repository))
        with TritonServer(lesson_repo, tmp_path / "external", models=["preprocess"]) as external:
            assert external.pids() == []
            assert (embedded.served_repository / "preprocess" / "1" / "model.py").is_file()
            assert embedded.is_ready("preprocess")
        with pytest.raises(ModelLoadError, match="no config.pbtxt"):
            TritonServer(lesson_repo, tmp_path / "again", models=["missing"]).start()
    monkeypatch.setenv("TRITON_REPOSITORY", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="TRITON_REPOSITORY"):
        TritonServer(lesson_repo, tmp_path / "bad")


@pytest.mark.slow
def test_control_apis_need_the_key_on_http_and_grpc_while_inference_and_metrics_stay_open(repository, tmp_path):
    import stat

    import requests
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repo, trained = repository
    with TritonServer(repo, tmp_path / "secure", models=["churn"]) as server:
        base, key = f"http://{server.http_url}", server.control_headers()
        assert server.control_key and server.control_key not in server.command_line
        for method, path in [("post", "/v2/repository/index"), ("post", "/v2/repository/models/churn/unload"),
                             ("get", "/v2/logging"), ("get", "/v2/trace/setting"),
                             ("get", "/v2/systemsharedmemory/status")]:
            refused = getattr(requests, method)(base + path, timeout=10)
            assert refused.status_code >= 400 and "triton-control-key" in refused.text, (path, refused.text)
        assert requests.post(f"{base}/v2/repository/index", headers=key, timeout=10).status_code == 200
        grpc = server.grpc_client()
        with pytest.raises(InferenceServerException):
            grpc.unload_model("churn")
        assert grpc.is_model_ready("churn")
        grpc.unload_model("churn", headers=server.control_headers(grpc=True))
        server.load("churn")
        x = trained.data.x_test[:2]
        request = httpclient.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        assert server.http_client().infer("churn", [request]).as_numpy("output").shape == (2, 2)
        assert requests.get(server.metrics_url, timeout=10).status_code == 200
        assert requests.get(f"{base}/v2/models/churn/config", timeout=10).status_code == 200
        private = [server.log_path, *server.shm_regions()]
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private), {
            str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in private}


def test_work_folders_are_private(tmp_path, monkeypatch):
    import stat

    from course_utils.paths import work_dir

    (tmp_path / "work").mkdir(mode=0o755)
    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    folder = work_dir("04_triton")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o755, "a COURSE_WORK_DIR you chose keeps its mode"


@pytest.mark.slow
def test_a_port_held_by_another_server_is_named_and_never_used(repository, tmp_path, monkeypatch):
    import time

    import course_utils.servers.triton as triton

    repo, _ = repository
    with TritonServer(repo, tmp_path / "first") as first:
        taken = [first.ports["http"], first.ports["grpc"], first.ports["metrics"]]
        monkeypatch.setattr(triton, "free_ports", lambda count: taken[:count])
        began = time.monotonic()
        with pytest.raises(RuntimeError, match=r"no longer running \(it exited with code") as raised:
            TritonServer(repo, tmp_path / "second").start()
        assert time.monotonic() - began < 15 and "address" in str(raised.value).lower()
        assert first.is_ready("churn") is False and first.pids(), "the first server is untouched"


@pytest.mark.slow
def test_a_dead_stub_is_detected_and_a_reload_recovers(repository, tmp_path):
    import time

    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repo, trained = repository
    with TritonServer(repo, tmp_path / "stubs", models=["churn"]) as server:
        client = server.http_client()
        x = trained.data.x_test[:1]

        def answered(times: int) -> int:
            ok = 0
            for _ in range(times):
                request = httpclient.InferInput("input", list(x.shape), "FP32")
                request.set_data_from_numpy(x)
                try:
                    client.infer("churn", [request])
                    ok += 1
                except InferenceServerException:
                    pass
            return ok

        assert server.dead_stubs() == {} and answered(4) == 4
        stub = next(p for p in psutil.Process(server.pids()[0]).children() if "churn_0_0" in " ".join(p.cmdline()))
        stub.kill()   # tritonserver does not reap it at once: it stays a zombie
        for _ in range(50):
            if not stub.is_running() or stub.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.1)
        assert server.is_ready("churn"), "Triton still calls the model READY"
        assert answered(8) < 8, "requests routed to the dead instance fail"
        assert "1 of 2 Python-backend stub processes are alive" in server.dead_stubs()["churn"]
        server.load("churn")
        assert server.dead_stubs() == {} and answered(8) == 8


@pytest.mark.slow
def test_models_named_at_start_load_side_by_side_and_a_broken_one_is_named(repository, tmp_path):
    import shutil

    repo, _ = repository
    side = tmp_path / "repo"
    shutil.copytree(repo / "churn", side / "churn")
    shutil.copytree(repo / "churn", side / "churn_copy")
    write_config(side / "churn_copy", model_config(
        "churn_copy", platform="onnxruntime_onnx", max_batch_size=8,
        inputs=[io_tensor("input", "TYPE_FP32", [4])], outputs=[io_tensor("output", "TYPE_FP32", [2])]))
    with TritonServer(side, tmp_path / "server", models=["churn", "churn_copy"]) as server:
        client = server.http_client()
        assert client.is_model_ready("churn") and client.is_model_ready("churn_copy")
        assert server.shm_regions() and all(r.stat().st_mode & 0o777 == 0o600 for r in server.shm_regions())
    (side / "broken" / "1").mkdir(parents=True)
    (side / "broken" / "config.pbtxt").write_text('name: "broken"\nmax_batch_sise: 4\n')
    server = TritonServer(side, tmp_path / "server2", models=["churn", "broken", "churn_copy"])
    with pytest.raises(ModelLoadError, match="could not load 'broken'"):
        server.start()
    assert server.pids() == [] and not server.shm_regions()   # a failed start stops what it began
