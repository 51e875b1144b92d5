"""A real Prometheus run like the course's servers: on 127.0.0.1 with a private config, scraping TorchServe and
Triton together, answering PromQL, and never outliving the kernel that started it (even after `kill -9`)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import alive

pytestmark = pytest.mark.slow


def test_a_missing_prometheus_says_how_to_install_it(monkeypatch):
    from course_utils.servers import prometheus

    monkeypatch.setattr(prometheus.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install --no-install-recommends prometheus"):
        prometheus.prometheus_binary("promtool")


def test_prometheus_scrapes_torchserve_and_triton_together(tmp_path):
    import numpy as np
    import tritonclient.http as httpclient

    from course_utils.sequences import write_running_score
    from course_utils.servers.prometheus import Prometheus
    from course_utils.servers.torchserve import TorchServe
    from course_utils.servers.triton import TritonServer

    (tmp_path / "store").mkdir()
    write_running_score(tmp_path / "repo", "oldest", strategy="oldest")
    with TorchServe(tmp_path / "store", tmp_path / "ts") as torchserve, \
            TritonServer(tmp_path / "repo", tmp_path / "triton", models=["oldest"]) as triton, \
            Prometheus(tmp_path / "prom", targets={"torchserve": torchserve.metrics_url.removeprefix("http://"),
                                                   "triton": triton.addresses["metrics"]}) as prometheus:
        assert stat.S_IMODE(os.stat(prometheus.config_path).st_mode) == 0o600
        listening = {c.laddr.ip for c in psutil.Process(prometheus.process.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        client = httpclient.InferenceServerClient(triton.http_url)
        for i in range(5):
            tensor = httpclient.InferInput("VALUE", [1, 1], "FP32")
            tensor.set_data_from_numpy(np.array([[float(i)]], dtype=np.float32))
            client.infer("oldest", [tensor], sequence_id=7, sequence_start=i == 0, sequence_end=i == 4)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            counted = prometheus.query('sum(nv_inference_count{model="oldest"})')
            if prometheus.target_health() == {"torchserve": "up", "triton": "up"} and counted \
                    and float(counted[0]["value"][1]) == 5:
                break
            time.sleep(0.5)
        assert prometheus.target_health() == {"torchserve": "up", "triton": "up"}
        assert float(prometheus.query('sum(nv_inference_count{model="oldest"})')[0]["value"][1]) == 5
        assert prometheus.query('up{job="torchserve"}')[0]["value"][1] == "1"
        with pytest.raises(ValueError, match="Prometheus refused"):
            prometheus.query("sum(")


KERNEL = """
import json, sys, time
from course_utils.servers.prometheus import Prometheus
prometheus = Prometheus(sys.argv[1]).start()
print(json.dumps({"pid": prometheus.process.pid}), flush=True)
time.sleep(600)
"""


def test_a_killed_kernel_leaves_no_prometheus_behind(tmp_path):
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(tmp_path / "prom")], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1])
    pid = json.loads(kernel.stdout.readline())["pid"]
    assert alive([pid])
    kernel.send_signal(signal.SIGKILL)
    kernel.wait(timeout=10)
    deadline = time.monotonic() + 15
    while alive([pid]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive([pid])


def test_every_grafana_panel_query_answers_from_a_real_prometheus(tmp_path):
    """The docker stack's dashboard, checked without Docker: each panel's PromQL, run by a real Prometheus that
    scrapes a real TorchServe and Triton after some good and some bad requests, answers with data (the alerts
    panel may be empty, but Prometheus must accept it)."""
    import requests

    from course_utils.archiver import archive_model, handler_file, save_torchscript, write_index_to_name
    from course_utils.data import CHURN_CLASSES
    from course_utils.models import load_churn_model, load_digit_cnn
    from course_utils.pipelines import write_digit_classifier
    from course_utils.servers.prometheus import Prometheus
    from course_utils.servers.torchserve import TorchServe
    from course_utils.servers.triton import TritonServer

    dashboard = json.loads((Path(__file__).resolve().parents[1] / "docker" / "grafana" / "dashboards"
                            / "serving.json").read_text())
    model_file = save_torchscript(load_churn_model().model, tmp_path / "churn.pt")
    archive_model("churn", model_file, handler_file("churn_handler"), tmp_path / "store",
                  extra_files=[handler_file("batch_safe"), write_index_to_name(CHURN_CLASSES, tmp_path)])
    digits = load_digit_cnn()
    write_digit_classifier(tmp_path / "repo", digits.model, name="digits")
    body = {"inputs": [{"name": "input__0", "shape": [1, 1, 8, 8], "datatype": "FP32",
                        "data": digits.data.x_test[0].ravel().tolist()}]}
    with TorchServe(tmp_path / "store", tmp_path / "ts", models=["churn.mar"]) as torchserve, \
            TritonServer(tmp_path / "repo", tmp_path / "triton", models=["digits"],
                         extra_args=["--metrics-config=summary_latencies=true"]) as triton, \
            Prometheus(tmp_path / "prom", targets={"torchserve": torchserve.metrics_url,
                                                   "triton": triton.metrics_url}) as prometheus:
        prometheus.wait_for_targets()
        for values in ([24, 80.5, 2, 12],) * 20 + ([24, 80.5, 2],) * 3:
            requests.post(f"{torchserve.inference_url}/predictions/churn", json={"data": values},
                          headers=torchserve.headers("inference"), timeout=10)
        for _ in range(20):
            assert requests.post(f"http://{triton.http_url}/v2/models/digits/infer", json=body, timeout=10).ok
        time.sleep(3)   # scrapes after the requests
        empty = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
                 if not prometheus.query(target["expr"]) and "ALERTS" not in target["expr"]]
    assert not empty, f"panel queries without data: {empty}"
