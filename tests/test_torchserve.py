"""The TorchServe manager against the real server: isolation, auth, readiness errors, cleanup."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from course_utils.archiver import archive_model
from course_utils.paths import socket_path_problem
from course_utils.servers.ports import port_is_free
from course_utils.servers.torchserve import ModelSettings, TorchServe
from conftest import alive


@pytest.fixture(scope="module")
def store(churn_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    archive_model("churn", churn_files["model"], churn_files["handler"], folder,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    broken = folder.parent / "broken_handler.py"
    broken.write_text("import not_a_module_anywhere\n")
    archive_model("broken", churn_files["model"], broken, folder)
    return folder


@pytest.mark.slow
def test_two_servers_side_by_side_then_nothing_left(store, tmp_path):
    servers = [TorchServe(store, tmp_path / f"s{i}", models=["churn.mar"]) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(TorchServe.start, servers))
    pids, ports = [], []
    for server in servers:
        answer = requests.post(f"{server.inference_url}/predictions/churn", json=[24, 80.5, 2, 12],
                               headers=server.headers("inference"), timeout=10)
        assert answer.status_code == 200
        pids += server.pids()
        ports += list(server.ports.values())[:5]
    assert len(set(ports)) == 10
    for server in servers:
        server.stop()
    assert not alive(pids)
    assert all(port_is_free(port) for port in ports)


@pytest.mark.slow
def test_a_work_root_of_150_characters_serves(store, tmp_path):
    """A clone under a long path: worker sockets live in a short temp folder, not under work/."""
    long_root = tmp_path / ("long-clone-path-" * 10)
    long_root = Path(str(long_root)[:150])
    assert len(str(long_root)) == 150
    with TorchServe(store, long_root / "ts", models=["churn.mar"]) as server:
        answer = requests.post(f"{server.inference_url}/predictions/churn", json=[24, 80.5, 2, 12],
                               headers=server.headers("inference"), timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(str(server.tmp_dir)) < 40 and (long_root / "ts" / "tmp").resolve() == server.tmp_dir
        tmp = server.tmp_dir
    assert not tmp.exists()


def test_a_socket_path_over_the_limit_is_named_in_one_line(tmp_path):
    assert socket_path_problem(tmp_path, ".ts.sock.9000") == ""
    problem = socket_path_problem(tmp_path / ("x" * 120), ".ts.sock.9000")
    assert "over the 107-byte limit of Unix sockets (AF_UNIX path too long)" in problem and "\n" not in problem


@pytest.mark.slow
def test_token_auth_is_on_and_keys_are_not_interchangeable(store, tmp_path):
    with TorchServe(store, tmp_path / "auth", models=["churn.mar"]) as server:
        url = f"{server.inference_url}/predictions/churn"
        assert requests.post(url, json=[1, 2, 3, 4], timeout=10).status_code == 400
        assert requests.post(url, json=[1, 2, 3, 4], headers=server.headers("management"), timeout=10).status_code == 400
        assert requests.post(url, json=[1, 2, 3, 4], headers=server.headers("inference"), timeout=10).status_code == 200
        assert requests.get(f"{server.metrics_url}/metrics", timeout=10).status_code == 200
        register = requests.post(f"{server.management_url}/models", params={"url": "churn.mar"},
                                 headers=server.headers("management"), timeout=10)
        assert register.status_code == 405  # model API off by default


@pytest.mark.slow
def test_allowed_urls_refuse_outside_archives(store, tmp_path):
    with TorchServe(store, tmp_path / "urls", enable_model_api=True) as server:
        refused = requests.post(f"{server.management_url}/models", params={"url": "http://127.0.0.1:9/x.mar"},
                                headers=server.headers("management"), timeout=10)
        assert refused.status_code == 404 and "allowed URL" in refused.json()["message"]


@pytest.mark.slow
def test_a_model_that_never_gets_ready_times_out_with_the_model_log(store, tmp_path):
    server = TorchServe(store, tmp_path / "broken", models=["broken.mar"], startup_timeout_s=10)
    with pytest.raises(TimeoutError, match="(?s)READY worker for model 'broken'.*not_a_module_anywhere"):
        server.start()
    assert server.process is None and server.pids() == []


def test_clear_errors_for_a_missing_archive_and_misnamed_settings(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mar is not in the model store"):
        TorchServe(store, tmp_path / "x", models=["nope.mar"])
    server = TorchServe(store, tmp_path / "y", models=["churn.mar"], settings={"chrun": ModelSettings()})
    server.ports = dict.fromkeys(["inference", "management", "metrics", "grpc_inference", "grpc_management",
                                  "workers"], 1)
    with pytest.raises(ValueError, match="settings keys must be model names"):
        server.config()


def test_a_batch_delay_below_1_ms_is_refused_with_the_reason():
    """TorchServe reads maxBatchDelay 0 as its 100 ms default (measured on 0.12: the management API then reports 100)."""
    with pytest.raises(ValueError, match="reads a delay below 1 ms as its default, 100 ms"):
        ModelSettings(batch_size=8, max_batch_delay_ms=0)
    assert ModelSettings(batch_size=8, max_batch_delay_ms=1).as_config("m.mar")["maxBatchDelay"] == 1


@pytest.mark.slow
def test_external_mode_registers_on_a_running_server_and_unregisters_at_stop(store, tmp_path, monkeypatch):
    """TORCHSERVE_URL pointed at an embedded server: the docker stack's path, without Docker."""
    shared = tmp_path / "shared_store"
    shared.mkdir()
    with TorchServe(shared, tmp_path / "host", enable_model_api=True) as host:
        for name, value in [("TORCHSERVE_URL", host.inference_url), ("TORCHSERVE_MANAGEMENT_URL", host.management_url),
                            ("TORCHSERVE_METRICS_URL", host.metrics_url),
                            ("TORCHSERVE_GRPC_URL", host.grpc_inference_target),
                            ("TORCHSERVE_KEY_FILE", str(host.work_dir / "key_file.json")),
                            ("TORCHSERVE_MODEL_STORE", str(shared))]:
            monkeypatch.setenv(name, value)
        lesson = TorchServe(store, tmp_path / "lesson", models=["churn.mar"],
                            settings={"churn": ModelSettings(batch_size=4, max_batch_delay_ms=10)})
        with lesson:
            assert lesson.pids() == [] and lesson.inference_url == host.inference_url
            assert sorted(p.name for p in shared.glob("*.mar")) == ["broken.mar", "churn.mar"]  # the store is mirrored
            answer = requests.post(f"{lesson.inference_url}/predictions/churn", json=[24, 80.5, 2, 12],
                                   headers=lesson.headers("inference"), timeout=30)
            assert answer.status_code == 200
            described = requests.get(f"{host.management_url}/models/churn", headers=host.headers("management"),
                                     timeout=30).json()[0]
            assert described["batchSize"] == 4 and described["maxBatchDelay"] == 10
        gone = requests.get(f"{host.management_url}/models/churn", headers=host.headers("management"), timeout=30)
        assert gone.status_code == 404  # unregistered at stop
        assert host.process.is_running()  # and the server itself left alone


def test_external_mode_explains_missing_settings(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSERVE_URL", "localhost:8080")
    with pytest.raises(ValueError, match="http://host:port"):
        TorchServe(store, tmp_path)
    monkeypatch.setenv("TORCHSERVE_URL", "http://localhost:8080")
    with pytest.raises(ValueError, match="TORCHSERVE_MODEL_STORE"):
        TorchServe(store, tmp_path)
