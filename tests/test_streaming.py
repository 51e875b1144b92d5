"""The course's language model streamed by real servers: what lesson 14 claims, thrown at both of them.

Triton (the decoupled model of course_utils/triton_models/zen_generate.py) and TorchServe (the handler
course_utils/handlers/zen_stream_handler.py): the streamed text is in-process greedy decoding; hostile
requests fail alone with a 4xx that says why, while a neighbour's stream goes on and the stub or worker
keeps its PID; a cancelled stream stops within a few steps; a fault mid-stream arrives as an error; a
killed kernel leaves no streaming server behind.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import alive
from course_utils.streaming import zen_grpc_inputs

pytestmark = pytest.mark.slow


def expected(prompt: str, max_tokens: int = 32) -> str:
    from course_utils.language_model import complete, load_language_model

    return complete(load_language_model(), prompt, max_tokens=max_tokens)


def stream_text(response: requests.Response) -> tuple[str, list[str]]:
    """(the streamed text, the errors) of a generate_stream answer."""
    from course_utils.streaming import sse_events

    events = list(sse_events(response))
    return "".join(e.get("text_output", "") for e in events), [e["error"] for e in events if "error" in e]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from course_utils.servers.triton import TritonServer
    from course_utils.streaming import write_zen_model

    repo = tmp_path_factory.mktemp("zen") / "repo"
    write_zen_model(repo, "zen", parameters={"step_delay_ms": 10, "max_prompt_tokens": 64, "max_tokens_limit": 100})
    write_zen_model(repo, "zen_faulty", parameters={"fail_at_step": 3})
    with TritonServer(repo, repo.parent / "server", models=["zen", "zen_faulty"]) as server:
        yield server


def test_triton_streams_in_process_greedy_decoding_over_http_and_grpc(triton):
    url = f"http://{triton.http_url}/v2/models/zen/generate_stream"
    with requests.post(url, json={"text_input": "Beautiful is", "max_tokens": 20}, stream=True, timeout=30) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        assert stream_text(answer) == (expected("Beautiful is", 20), [])
    client = triton.grpc_client()
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("zen", zen_grpc_inputs(b"Errors should", max_tokens=30), enable_empty_final_response=True)
    pieces = []
    while True:
        result, error = answers.get(timeout=30)
        assert error is None, error
        if result.as_numpy("text_output") is not None:
            pieces.append(result.as_numpy("text_output")[0].decode())
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    assert "".join(pieces) == expected("Errors should", 30) and len(pieces) > 3


HOSTILE_HTTP = {
    "empty prompt": ({"text_input": ""}, 400, "the prompt is empty"),
    "prompt over the cap": ({"text_input": "Beautiful " * 40}, 400, "accepts at most 64"),
    "max_tokens 0": ({"text_input": "x", "max_tokens": 0}, 400, "from 1 to 100"),
    "max_tokens over the cap": ({"text_input": "x", "max_tokens": 101}, 400, "from 1 to 100"),
    "max_tokens negative": ({"text_input": "x", "max_tokens": -5}, 400, "from 1 to 100"),
    "temperature NaN-like huge": ({"text_input": "x", "temperature": 1e30}, 400, "temperature is"),
    "temperature negative": ({"text_input": "x", "temperature": -1}, 400, "temperature is"),
    "no prompt": ({"max_tokens": 5}, 400, "text_input is missing"),
    "no inputs at all": ({"nothing": 1}, 400, "missing required input"),
    # tritonserver 2.51's own JSON parser answers a value it cannot convert with 500, before any model code
    "max_tokens as text": ({"text_input": "x", "max_tokens": "five"}, 500, "non-signed-integer"),
    "prompt of 10,000 emoji": ({"text_input": "🚀" * 10000}, 400, "accepts at most 64"),
}


def test_each_hostile_request_fails_alone_with_a_4xx_while_a_neighbour_streams_on(triton):
    url = f"http://{triton.http_url}/v2/models/zen/generate_stream"
    stubs = [p.pid for p in triton.stub_processes("zen")]
    neighbour: dict = {}

    def long_stream() -> None:
        body = {"text_input": "Although", "max_tokens": 60, "ignore_eos": True}
        with requests.post(url, json=body, stream=True, timeout=60) as answer:
            neighbour["text"], neighbour["errors"] = stream_text(answer)

    thread = threading.Thread(target=long_stream)
    thread.start()
    rows = {}
    for name, (body, status, words) in HOSTILE_HTTP.items():
        answer = requests.post(url, json=body, timeout=30)
        rows[name] = (answer.status_code, answer.text)
        assert answer.status_code == status and words in answer.text, (name, rows[name])
    thread.join(60)
    from course_utils.language_model import complete, load_language_model

    assert neighbour == {"text": complete(load_language_model(), "Although", 60, stop_at_eos=False), "errors": []}
    assert [p.pid for p in triton.stub_processes("zen")] == stubs
    client = triton.grpc_client()   # bytes that are not UTF-8 only travel over gRPC (JSON cannot hold them)
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("zen", zen_grpc_inputs(b"\xff\xfe\x00"), enable_empty_final_response=True)
    _, error = answers.get(timeout=30)
    client.stop_stream()
    assert error is not None and "not UTF-8" in error.message()
    with requests.post(url, json={"text_input": "Flat is"}, stream=True, timeout=30) as answer:
        assert stream_text(answer) == (expected("Flat is"), [])


def test_a_cancelled_or_abandoned_stream_stops_within_a_few_steps(triton):
    client = triton.grpc_client()
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("zen", zen_grpc_inputs(b"Beautiful is", max_tokens=100, ignore_eos=True),
                              request_id="to-cancel", enable_empty_final_response=True)
    for _ in range(2):
        answers.get(timeout=30)
    client.stop_stream(cancel_requests=True)
    url = f"http://{triton.http_url}/v2/models/zen/generate_stream"
    body = {"text_input": "Beautiful is", "max_tokens": 100, "ignore_eos": True}
    with requests.post(url, json=body, stream=True, timeout=30) as answer:
        next(line for line in answer.iter_lines() if line)   # one piece, then the client goes away
    time.sleep(0.5)
    counts = [int(n) for n in re.findall(r"cancelled by its client after (\d+) tokens",
                                         triton.log_tail(grep="cancelled by its client"))]
    assert len(counts) >= 2 and max(counts[-2:]) < 10, counts


def test_a_fault_mid_stream_arrives_as_an_error_event_and_the_model_serves_on(triton):
    url = f"http://{triton.http_url}/v2/models/zen_faulty/generate_stream"
    with requests.post(url, json={"text_input": "Beautiful is"}, stream=True, timeout=30) as answer:
        text, errors = stream_text(answer)
    assert answer.status_code == 200 and text == expected("Beautiful is", 2)
    assert len(errors) == 1 and "generation failed at step 3" in errors[0]
    with requests.post(f"http://{triton.http_url}/v2/models/zen/generate_stream", json={"text_input": "Flat is"},
                       stream=True, timeout=30) as answer:
        assert stream_text(answer) == (expected("Flat is"), [])


def test_torchserve_streams_and_refuses_bad_input_over_http_and_grpc_keeping_its_worker(tmp_path):
    import grpc

    from course_utils.grpc_client import compile_torchserve_protos
    from course_utils.servers.torchserve import TorchServe
    from course_utils.streaming import archive_zen

    archive_zen(tmp_path / "store", tmp_path / "files", handler_settings={"max_prompt_tokens": 64})
    stubs = compile_torchserve_protos(tmp_path / "grpc")
    with TorchServe(tmp_path / "store", tmp_path / "server", models=["zen.mar"]) as server:
        url = f"{server.inference_url}/predictions/zen"
        headers = server.headers("inference")
        pids = server.pids()
        with requests.post(url, json={"text_input": "Beautiful is", "max_tokens": 20}, headers=headers, stream=True,
                           timeout=30) as answer:
            chunks = list(answer.iter_content(chunk_size=None))
        assert answer.headers.get("transfer-encoding") == "chunked" and len(chunks) > 3
        assert b"".join(chunks).decode() == expected("Beautiful is", 20)
        for body, words in [({"text_input": ""}, "empty"), ({"text_input": "x", "max_tokens": 0}, "from 1 to 128"),
                            ({"text_input": "Beautiful " * 40}, "at most 64"), (["a list"], "text_input"),
                            ({"text_input": "x", "seed": "s"}, "seed"), ({"text_input": "x", "temperature": True}, "temperature"),
                            # a double this small overflows the logits: NaN odds would fail the whole batch
                            ({"text_input": "x", "temperature": 1e-310}, "at least 0.01")]:
            answer = requests.post(url, json=body, headers=headers, timeout=30)
            assert answer.status_code == 400 and words in answer.json()["message"], (body, answer.text)
        answer = requests.post(url, data=b"\xff\xfe{", headers={**headers, "Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 400 and "text_input" in answer.json()["message"]
        channel = grpc.insecure_channel(server.grpc_inference_target)
        inference = stubs["inference_pb2_grpc"].InferenceAPIsServiceStub(channel)
        metadata = [("authorization", f"Bearer {server.key('inference')}")]
        good = stubs["inference_pb2"].PredictionsRequest(model_name="zen", input={"data": b'{"text_input": "Flat is"}'})
        assert b"".join(m.prediction for m in inference.StreamPredictions(good, metadata=metadata)).decode() \
            == expected("Flat is")
        for body in [b'{"text_input": ""}', b'not json', b'{"text_input": "x", "max_tokens": 500}']:
            bad = stubs["inference_pb2"].PredictionsRequest(model_name="zen", input={"data": body})
            messages = list(inference.StreamPredictions(bad, metadata=metadata))   # no "Worker died"
            assert len(messages) == 1 and json.loads(messages[0].prediction)["code"] == 400, body
        channel.close()
        assert server.pids() == pids, "the worker was restarted"
        assert "NullPointerException" not in server.log_tail(lines=400)


KERNEL = """
import json, sys, threading, time, requests
from course_utils.servers.torchserve import TorchServe
from course_utils.servers.triton import TritonServer
repo, store, work = sys.argv[1:4]
triton = TritonServer(repo, work + "/triton", models=["zen"]).start()
ts = TorchServe(store, work + "/ts", models=["zen.mar"]).start()
body = {"text_input": "Beautiful is", "max_tokens": 100, "ignore_eos": True}
streams = [lambda: requests.post(f"http://{triton.http_url}/v2/models/zen/generate_stream", json=body, stream=True),
           lambda: requests.post(ts.inference_url + "/predictions/zen", json=body, headers=ts.headers("inference"), stream=True)]
answers = [open_stream() for open_stream in streams]
for answer in answers:
    next(answer.iter_content(chunk_size=None))   # both streams are running
print(json.dumps({"pids": triton.pids() + ts.pids(), "shm": [str(r) for r in triton.shm_regions()],
                  "tmp": str(ts.tmp_dir)}), flush=True)
time.sleep(600)
"""


def test_a_kernel_killed_with_streams_in_flight_leaves_no_server_behind(tmp_path):
    from course_utils.streaming import archive_zen, write_zen_model

    write_zen_model(tmp_path / "repo", "zen", parameters={"step_delay_ms": 50})
    archive_zen(tmp_path / "store", tmp_path / "files", handler_settings={"step_delay_ms": 50})
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(tmp_path / "repo"), str(tmp_path / "store"),
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        started = json.loads(kernel.stdout.readline())
    except json.JSONDecodeError:
        kernel.kill()
        raise AssertionError(kernel.stderr.read()[-3000:]) from None
    assert len(alive(started["pids"])) >= 4 and started["shm"], started   # tritonserver, stub, java, worker
    killed = time.monotonic()
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait()

    def leftovers() -> list:
        return [*alive(started["pids"]), *[r for r in [*started["shm"], started["tmp"]] if Path(r).exists()]]

    while leftovers() and time.monotonic() - killed < 30:
        time.sleep(0.2)
    assert not leftovers(), f"left {time.monotonic() - killed:.1f} s after kill -9: {leftovers()}"


def test_continuous_and_iterative_batching_give_each_request_the_text_it_gets_alone(tmp_path):
    """Lesson 15's schedulers: sequences join and leave between steps, and no answer changes; bad input and
    cancellation work as in the one-at-a-time model."""
    from concurrent.futures import ThreadPoolExecutor

    from course_utils.language_model import complete, load_language_model
    from course_utils.servers.triton import TritonServer
    from course_utils.streaming import write_zen_model

    lm = load_language_model()
    write_zen_model(tmp_path / "repo", "continuous", parameters={"slots": 4, "step_delay_ms": 10}, batching="continuous")
    write_zen_model(tmp_path / "repo", "iterative", parameters={"slots": 8}, batching="iterative")
    asks = [("Beautiful is", 40, 0.0, 0), ("Errors should", 6, 0.0, 0), ("Although", 25, 0.7, 5),
            ("Flat is", 12, 0.0, 0), ("If the", 33, 1.0, 2), ("Now is", 3, 0.0, 0)]   # 6 requests, 4 slots
    with TritonServer(tmp_path / "repo", tmp_path / "server", models=["continuous", "iterative"]) as server:
        for model in ("continuous", "iterative"):
            url = f"http://{server.http_url}/v2/models/{model}/generate_stream"

            def ask(args):
                prompt, tokens, temperature, seed = args
                body = {"text_input": prompt, "max_tokens": tokens, "temperature": temperature, "seed": seed,
                        "ignore_eos": True}
                with requests.post(url, json=body, stream=True, timeout=60) as answer:
                    return stream_text(answer)

            with ThreadPoolExecutor(len(asks)) as pool:
                streamed = list(pool.map(ask, asks))
            alone = [(complete(lm, p, t, temperature=temp, seed=s, stop_at_eos=False), []) for p, t, temp, s in asks]
            assert streamed == alone, model
            answer = requests.post(url, json={"text_input": "", "max_tokens": 3}, timeout=30)
            assert answer.status_code == 400 and "empty" in answer.text, (model, answer.text)
        with requests.post(f"http://{server.http_url}/v2/models/continuous/generate_stream", stream=True, timeout=30,
                           json={"text_input": "Beautiful is", "max_tokens": 100, "ignore_eos": True}) as answer:
            next(line for line in answer.iter_lines() if line)   # the client goes away after one piece
        time.sleep(0.5)
        counts = [int(n) for n in re.findall(r"after (\d+) tokens", server.log_tail(grep="cancelled by its client"))]
        assert counts and counts[-1] < 20, counts   # of 100, with steps of 10 ms or more
        statistics = requests.get(f"http://{server.http_url}/v2/models/iterative/stats", timeout=10).json()
        assert statistics["model_stats"][0]["execution_count"] < sum(t for _, t, _, _ in asks), "steps were shared"
