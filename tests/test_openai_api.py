"""TorchServe's continuous batching behind OpenAI's completions API (lesson 16), thrown at a real server.

course_utils/handlers/zen_openai_handler.py with `continuousBatching: true`: the `openai` client gets
in-process greedy decoding; hostile requests that join a running batch fail alone with OpenAI's error body
and a 4xx that says why, while a neighbour's stream goes on and the worker keeps its PID; an answer that
is its request's first and last ends (no waiting client); clients that leave free their KV-cache slots.
"""

from __future__ import annotations

import threading

import pytest
import requests

pytestmark = pytest.mark.slow


def expected(prompt: str, max_tokens: int, stop_at_eos: bool = True) -> str:
    from course_utils.language_model import complete, load_language_model

    return complete(load_language_model(), prompt, max_tokens=max_tokens, stop_at_eos=stop_at_eos)


def sse_text(response: requests.Response) -> str:
    import json

    text = ""
    for line in response.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            text += json.loads(line[len(b"data: "):])["choices"][0]["text"]
    return text


@pytest.fixture(scope="module")
def torchserve(tmp_path_factory):
    from course_utils.servers.torchserve import TorchServe
    from course_utils.streaming import archive_zen

    folder = tmp_path_factory.mktemp("openai")
    archive_zen(folder / "store", folder / "files", "zen", handler="zen_openai_handler",
                handler_settings={"max_prompt_tokens": 64, "max_tokens_limit": 100},
                settings={"continuousBatching": True, "batchSize": 8, "maxBatchDelay": 1})
    with TorchServe(folder / "store", folder / "server", models=["zen.mar"]) as server:
        yield server


def completions_url(server) -> str:
    return f"{server.inference_url}/predictions/zen/1.0/v1/completions"


def test_the_openai_client_gets_in_process_greedy_decoding(torchserve):
    from openai import OpenAI

    from course_utils.language_model import load_language_model

    client = OpenAI(base_url=completions_url(torchserve).removesuffix("/completions"), api_key=torchserve.key("inference"))
    answer = client.completions.create(model="zen", prompt="Errors should", max_tokens=30, temperature=0)
    assert answer.choices[0].text == expected("Errors should", 30)
    prompt_ids = load_language_model().tokenizer.encode("Errors should").ids
    assert answer.usage.prompt_tokens == len(prompt_ids) and 0 < answer.usage.completion_tokens <= 30
    pieces = [c.choices[0].text for c in client.completions.create(model="zen", prompt="Errors should", max_tokens=30,
                                                                     temperature=0, stream=True)]
    assert "".join(pieces) == answer.choices[0].text and len(pieces) > 3


HOSTILE = {   # body -> what the message must name
    b"not json": "JSON",
    b"[1, 2]": "JSON object",
    b'{"prompt": "Beautiful is"}': "model",
    b'{"model": "zen"}': "prompt",
    b'{"model": "zen", "prompt": 42}': "text",
    b'{"model": "zen", "prompt": ["a", "b"]}': "text",
    b'{"model": "zen", "prompt": ""}': "empty",
    b'{"model": "zen", "prompt": "' + b"Beautiful is better. " * 40 + b'"}': "at most 64",
    b'{"model": "zen", "prompt": "a", "max_tokens": 0}': "max_tokens",
    b'{"model": "zen", "prompt": "a", "max_tokens": 1000}': "max_tokens",
    b'{"model": "zen", "prompt": "a", "max_tokens": "10"}': "max_tokens",
    b'{"model": "zen", "prompt": "a", "temperature": -1}': "temperature",
    b'{"model": "zen", "prompt": "a", "temperature": "hot"}': "temperature",
    b'{"model": "zen", "prompt": "a", "temperature": 1e-310}': "at least 0.01",   # NaN odds: the whole step would fail
    b'{"model": "zen", "prompt": "a", "seed": -1}': "seed",
    b'{"model": "zen", "prompt": "a", "stream": "yes"}': "stream",
    b'{"model": "zen", "prompt": "a", "n": 2}': "n 2 is not supported",
    b'{"model": "zen", "prompt": "a", "top_p": 0.5}': "top_p",
    b'{"model": "zen", "prompt": "a", "best_of": 3}': "best_of",
    b'{"model": "zen", "prompt": "a", "tools": []}': "unsupported",
    b'{"model": "zen", "prompt": "a", "stream": true, "stream_options": {"include_usage": "yes"}}': "stream_options",
    b'{"model": "gpt-4o", "prompt": "a"}': "does not exist",
    b'{"model": "zen", "prompt": "\xff\xfe"}': "not valid JSON",
    b"[" * 100000 + b"]" * 100000: "nested too deeply",
}


def test_hostile_requests_fail_alone_while_a_neighbour_streams_and_the_worker_lives(torchserve):
    url, headers = completions_url(torchserve), torchserve.headers("inference")
    workers = torchserve.pids()
    neighbour: dict[str, str] = {}

    def stream() -> None:
        with requests.post(url, headers=headers, stream=True, timeout=60,
                           json={"model": "zen", "prompt": "Beautiful is", "max_tokens": 100, "temperature": 0,
                                 "ignore_eos": True, "stream": True}) as answer:
            neighbour["text"] = sse_text(answer)

    thread = threading.Thread(target=stream)
    thread.start()
    for body, named in HOSTILE.items():
        answer = requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)
        assert 400 <= answer.status_code < 500, (body[:60], answer.status_code, answer.text[:200])
        error = answer.json()["error"]
        assert named in error["message"] and "Traceback" not in error["message"], (body[:60], error)
        assert error["type"] == "invalid_request_error", error
    wrong_path = requests.post(f"{torchserve.inference_url}/predictions/zen", json={"model": "zen", "prompt": "a"},
                               headers=headers, timeout=10)
    assert wrong_path.status_code == 404 and "v1/completions" in wrong_path.json()["error"]["message"]
    thread.join(60)
    assert "text" in neighbour, "the neighbour's stream never ended"
    assert neighbour["text"] == expected("Beautiful is", 100, stop_at_eos=False)
    assert torchserve.pids() == workers
    frontend = torchserve.log_tail("", 400, "ts_log.log")   # (a client's reset connection is logged, and harmless)
    assert "IllegalStateException" not in frontend and "Worker died" not in frontend
    assert "Invoking custom service failed" not in torchserve.log_tail("Invoking", 5, "model_log.log")


def test_fields_at_openais_neutral_values_and_nulls_are_accepted_and_the_stream_has_openais_format(torchserve):
    url, headers = completions_url(torchserve), torchserve.headers("inference")
    body = {"model": "zen", "prompt": "Beautiful is", "max_tokens": None, "temperature": 0, "seed": None, "n": 1,
            "top_p": 1, "stop": None, "logprobs": None, "echo": False, "presence_penalty": 0, "user": "learner-7"}
    whole = requests.post(url, headers=headers, json=body, timeout=30)
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["text"] == expected("Beautiful is", 16)   # OpenAI's default max_tokens
    with requests.post(url, headers=headers, json={**body, "stream": True}, stream=True, timeout=30) as streamed:
        lines = [line for line in streamed.iter_lines() if line]
    assert streamed.headers["Content-Type"] == "text/event-stream" and lines[-1] == b"data: [DONE]"
    import json
    chunks = [json.loads(line[len(b"data: "):]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" and c["model"] == "zen" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    with requests.post(url, headers=headers, json={**body, "stream": True, "stream_options": {"include_usage": True}},
                       stream=True, timeout=30) as streamed:   # as AIPerf and genai-perf ask for it
        last = json.loads([line for line in streamed.iter_lines() if line][-2][len(b"data: "):])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == whole.json()["usage"]["completion_tokens"]


def test_an_answer_that_is_its_requests_first_and_last_ends(torchserve):
    url, headers = completions_url(torchserve), torchserve.headers("inference")
    whole = requests.post(url, headers=headers, timeout=10,
                          json={"model": "zen", "prompt": "Beautiful is", "max_tokens": 1, "temperature": 0})
    assert whole.status_code == 200 and whole.json()["choices"][0]["finish_reason"] == "length"
    with requests.post(url, headers=headers, stream=True, timeout=10,
                       json={"model": "zen", "prompt": "Beautiful is", "max_tokens": 1, "temperature": 0,
                             "stream": True}) as streamed:
        assert sse_text(streamed) == whole.json()["choices"][0]["text"] == expected("Beautiful is", 1)


def test_clients_that_leave_free_their_slots(torchserve):
    url, headers = completions_url(torchserve), torchserve.headers("inference")
    before = torchserve.log_tail("cancelled by its client", 100, "model_log.log").count("cancelled by its client")
    for _ in range(8):   # every slot, each left after its first piece
        with requests.post(url, headers=headers, stream=True, timeout=30,
                           json={"model": "zen", "prompt": "Now is", "max_tokens": 100, "ignore_eos": True,
                                 "temperature": 0, "stream": True}) as answer:
            next(answer.iter_lines())
    # had the slots stayed taken, these would fail ("all 8 KV-cache slots are in use")
    for prompt in ["Beautiful is", "Errors should"]:
        answer = requests.post(url, headers=headers, timeout=30,
                               json={"model": "zen", "prompt": prompt, "max_tokens": 20, "temperature": 0})
        assert answer.status_code == 200 and answer.json()["choices"][0]["text"] == expected(prompt, 20)
    after = torchserve.log_tail("cancelled by its client", 100, "model_log.log").count("cancelled by its client")
    assert after - before == 8
