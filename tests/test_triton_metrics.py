"""What Triton 2.51 counts as a failure, and which latency metrics it exports: the facts lesson 22 states.

A request Triton refuses before the model (a wrong shape: 400; a full queue: 503) is counted nowhere; a model's own
error response (400) counts as a success; a model that raises fails its batch with 500 and is counted as a BACKEND
failure, and the latency summaries count only the successes; a killed stub makes every request wait about a
second and fail with 500, counted too. With summary_latencies (and histogram_latencies asked for as well) the
exporter has summaries and no histogram for a non-decoupled model."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.slow


def _counts(metrics_text: str, model: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(("nv_inference_request_success{", "nv_inference_request_failure{")) and f'model="{model}"' in line:
            name, value = line.rsplit(" ", 1)
            reason = name.split('reason="')[1].split('"')[0] if "reason=" in name else "success"
            counts[reason] = counts.get(reason, 0) + float(value)
    return counts


def test_triton_counts_backend_failures_only_and_exports_no_histogram(tmp_path):
    from course_utils.checks.ex11_read_the_metrics import _write_model
    from course_utils.servers.triton import TritonServer
    from course_utils.paths import PACKAGE_DIR
    from course_utils.triton_config import io_tensor, model_config, read_config, write_config, write_python_model

    repository = tmp_path / "repo"
    _write_model(repository, "faulty")
    write_python_model(repository / "pixel_check",   # answers bad pixels with its own error response (400)
                       model_config("pixel_check", backend="python", max_batch_size=8,
                                    inputs=[io_tensor("input__0", "TYPE_FP32", [1, 8, 8])],
                                    outputs=[io_tensor("PIXELS", "TYPE_FP32", [1, 8, 8])]),
                       PACKAGE_DIR / "triton_models" / "pixel_check.py")
    _write_model(repository, "short_queue")
    config = read_config(repository / "short_queue")
    config.dynamic_batching.default_queue_policy.max_queue_size = 1
    write_config(repository / "short_queue", config)
    flags = ["--metrics-config=summary_latencies=true", "--metrics-config=histogram_latencies=true"]
    with TritonServer(repository, tmp_path / "triton", models=["faulty", "short_queue", "pixel_check"],
                      extra_args=flags) as triton:
        def infer(model: str, values: list[float], shape=(1, 4)) -> int:
            body = {"inputs": [{"name": "INPUT", "shape": list(shape), "datatype": "FP32", "data": values}]}
            return requests.post(f"http://{triton.http_url}/v2/models/{model}/infer", json=body, timeout=30).status_code

        assert [infer("faulty", [1.0] * 4) for _ in range(3)] == [200] * 3
        assert infer("faulty", [1.0] * 3, shape=(1, 3)) == 400                       # wrong shape: refused by Triton
        assert [infer("faulty", [-1.0] * 4) for _ in range(2)] == [500] * 2         # the model raises
        with ThreadPoolExecutor(16) as pool:                                          # more in flight than the queue
            statuses = list(pool.map(lambda _: infer("short_queue", [1.0] * 4), range(400)))
        assert 503 in statuses and 200 in statuses
        pixels = {"inputs": [{"name": "input__0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [2.0] * 64}]}
        refused = requests.post(f"http://{triton.http_url}/v2/models/pixel_check/infer", json=pixels, timeout=30)
        assert refused.status_code == 400 and "send pixel values in [0, 1]" in refused.text
        text = requests.get(triton.metrics_url, timeout=10).text
        assert _counts(text, "faulty") == {"success": 3, "BACKEND": 2, "REJECTED": 0, "CANCELED": 0, "OTHER": 0}
        assert _counts(text, "pixel_check")["success"] == 1                           # its own 400: a success
        # the durations (and their summaries) cover the successful requests only: 3 here, not 5
        assert f'nv_inference_request_summary_us_count{{model="faulty",version="1"}} 3' in text
        value = lambda name: next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()   # noqa: E731
                                  if line.startswith(f'{name}{{model="faulty",version="1"}}'))
        assert value("nv_inference_request_duration_us") == value("nv_inference_request_summary_us_sum")
        queued = _counts(text, "short_queue")
        assert queued["success"] == statuses.count(200) and queued["REJECTED"] == 0 and sum(queued.values()) == queued["success"]
        types = {line.split()[3] for line in text.splitlines() if line.startswith("# TYPE nv_inference")}
        assert "summary" in types and "histogram" not in types

        triton.stub_processes("faulty")[0].kill()
        began = time.monotonic()
        assert infer("faulty", [1.0] * 4) == 500
        assert 0.3 < time.monotonic() - began < 10          # it waits for the dead stub first
        assert _counts(requests.get(triton.metrics_url, timeout=10).text, "faulty")["BACKEND"] == 3
