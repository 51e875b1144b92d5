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
    with pytest.raises(FileNotFoundError, match="apt-get install prometheus"):
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
