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
    b'{"model": "zen", "prompt": "a", "seed": -1}': "seed",
    b'{"model": "zen", "prompt": "a", "stream": "yes"}': "stream",
    b'{"model": "zen", "prompt": "a", "n": 2}': "unsupported",
    b'{"model": "gpt-4o", "prompt": "a"}': "does not exist",
    b'{"model": "zen", "prompt": "\xff\xfe"}': "",
    b"[" * 100000 + b"]" * 100000: "",
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
        message = answer.json()["error"]["message"]
        assert named in message and "Traceback" not in message, (body[:60], message)
    wrong_path = requests.post(f"{torchserve.inference_url}/predictions/zen", json={"model": "zen", "prompt": "a"},
                               headers=headers, timeout=10)
    assert wrong_path.status_code == 404 and "v1/completions" in wrong_path.json()["error"]["message"]
    thread.join(60)
    assert neighbour["text"] == expected("Beautiful is", 100, stop_at_eos=False)
    assert torchserve.pids() == workers
    assert "Exception" not in torchserve.log_tail("Exception", 5, "ts_log.log").split("---")[-1]


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
