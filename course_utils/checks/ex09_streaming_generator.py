"""Graders for ex09_streaming_generator: a decoupled Triton model.py that streams the course's language model.

The grader serves the learner's model.py with the config of lesson 14 (steps slowed to 20 ms, prompts of
at most 64 tokens, max_tokens at most 100) in a real tritonserver, and judges what clients receive.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path

import requests

from ..language_model import complete, load_language_model
from ..machinery.grading import Fail, GradingSession, Rubric, Verdict, expect
from ..models import single_thread
from ..paths import empty_dir
from ..streaming import sse_events, write_zen_model, zen_grpc_inputs
from .live_triton import serve_for_grading

MODEL = "zen"
LIMITS = {"step_delay_ms": 20, "max_prompt_tokens": 64, "max_tokens_limit": 100}
WAIT_S = 6   # several times longer than any answer of a working model takes (at most 100 steps of 20 ms)
FINAL_FLAG = "sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)"

# check id -> points: the answer key
RUBRIC = Rubric({"9.1": 1, "9.2": 3, "9.3": 2, "9.4": 2, "9.5": 2, "9.6": 3, "9.7": 2})


def _stream(url: str, body: dict) -> tuple[list[float], list[str], list[str]]:
    """(arrival times in s, text pieces, errors) of one generate_stream request; Fail when it does not end."""
    start = time.perf_counter()
    times, pieces, errors = [], [], []
    try:
        with requests.post(url, json=body, stream=True, timeout=(5, WAIT_S)) as answer:
            if answer.status_code != 200:
                return [], [], [f"HTTP {answer.status_code}: {answer.text.strip()[:200]}"]
            for event in sse_events(answer):
                times.append(time.perf_counter() - start)
                if "error" in event:
                    errors.append(event["error"])
                else:
                    pieces.append(event.get("text_output", ""))
    except requests.RequestException as error:
        if not _timed_out(error):
            raise
        raise Fail(f"the stream did not end within {WAIT_S} s (after {len(pieces)} pieces): end every request's "
                   f"stream with the FINAL flag, {FINAL_FLAG}, also after an error") from None
    return times, pieces, errors


def _timed_out(error: requests.RequestException) -> bool:
    """A read timeout: before the answer began (ReadTimeout), or in the middle of a stream (a ConnectionError)."""
    return isinstance(error, requests.ReadTimeout) or "Read timed out" in str(error)


def _grpc_stream(client, prompt: bytes, **optional: object) -> tuple[str, list[str]]:
    """(text, errors) of one request on a gRPC stream; Fail when its final response never comes."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(MODEL, zen_grpc_inputs(prompt, **optional), enable_empty_final_response=True)
        pieces, errors = [], []
        while True:
            try:
                result, error = answers.get(timeout=WAIT_S)
            except queue.Empty:
                raise Fail(f"no final response within {WAIT_S} s: end every request's stream with the FINAL flag, "
                           f"{FINAL_FLAG}") from None
            if error is not None:
                errors.append(error.message())
                return "".join(pieces), errors
            if result.as_numpy("text_output") is not None:
                pieces.append(result.as_numpy("text_output")[0].decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return "".join(pieces), errors
    finally:
        client.stop_stream()


BAD_REQUESTS = {
    "an empty prompt": {"text_input": ""},
    "a prompt of 240 tokens (the limit is 64)": {"text_input": "Beautiful " * 40},
    "max_tokens 0": {"text_input": "Flat is", "max_tokens": 0},
    "max_tokens 101 (the limit is 100)": {"text_input": "Flat is", "max_tokens": 101},
    "temperature 5": {"text_input": "Flat is", "temperature": 5.0},
}


def grade(model_py: Path, work: Path, show: bool = True) -> list[Verdict]:
    """Serve `model_py` as lesson 14's decoupled model and judge its streams, its cancellation and its errors.

    Introduced in ex09_streaming_generator.
    """
    work = empty_dir(work)
    grading = GradingSession()
    lm = load_language_model()
    url = lambda: f"http://{grading.server.http_url}/v2/models/{MODEL}/generate_stream"  # noqa: E731

    def loads() -> None:
        expect(Path(model_py).is_file(), f"{model_py} does not exist: run the %%writefile cell first")
        repository = work / "model_repository"
        write_zen_model(repository, MODEL, parameters=LIMITS, model_file=Path(model_py))
        serve_for_grading(grading, repository, work, MODEL)
        _, pieces, errors = _stream(url(), {"text_input": "Flat is", "max_tokens": 3})
        expect(pieces and not errors, f"a request for 3 tokens got {pieces} {errors}: send each piece as a response "
               "with the output text_output")

    def greedy_text() -> None:
        times, pieces, errors = _stream(url(), {"text_input": "Beautiful is", "max_tokens": 20})
        grading.found["times"] = times
        expect(not errors, f"the stream answered with an error: {errors[0] if errors else ''}")
        wanted = complete(lm, "Beautiful is", max_tokens=20)
        expect("".join(pieces) == wanted, f"streamed {''.join(pieces)!r}, in-process greedy decoding gives "
               f"{wanted!r}: send only the new text of each step (TextStream.push), greedy when temperature is 0")

    def streams() -> None:
        times = grading.found["times"]
        expect(len(times) >= 3, f"{len(times)} response(s) for 7 tokens of text: send one response per new piece")
        expect(times[0] < times[-1] / 2, f"the first piece came at {times[0] * 1000:.0f} ms and the last at "
               f"{times[-1] * 1000:.0f} ms: send each piece as soon as it is decoded, not all of them at the end")

    def options() -> None:
        client = grading.server.grpc_client()
        # 0.5 is exact in FP32, the type the request carries; the reference runs on one thread, as the model does
        text, errors = _grpc_stream(client, b"Errors should", max_tokens=40, temperature=0.5, seed=3, ignore_eos=True)
        expect(not errors, f"a gRPC request with every option answered with an error: {errors[0] if errors else ''}")
        with single_thread():
            wanted = complete(lm, "Errors should", max_tokens=40, temperature=0.5, seed=3, stop_at_eos=False)
        expect(text == wanted, f"with max_tokens=40, temperature=0.5, seed=3, ignore_eos=true you streamed {text!r}; "
               f"in-process decoding gives {wanted!r}: read each optional input (get_input_tensor_by_name is None "
               "when the client left it out), check them with self.limits.check(...) and give decoder.add the values it returns")

    def cancels() -> None:
        client = grading.server.grpc_client()
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer(MODEL, zen_grpc_inputs(b"Beautiful is", max_tokens=100, ignore_eos=True),
                                  enable_empty_final_response=True)
        for _ in range(3):
            try:
                answers.get(timeout=WAIT_S)
            except queue.Empty:
                raise Fail("a request for 100 tokens sent fewer than 3 pieces") from None
        client.stop_stream(cancel_requests=True)   # 3 of 100 steps (20 ms each) done
        times, _, _ = _stream(url(), {"text_input": "Flat is", "max_tokens": 3})
        expect(bool(times), "the request after the cancelled one got no answer")
        expect(times[0] < 0.6, f"after a request was cancelled 3 steps into 100, the next request's first piece came "
               f"after {times[0]:.1f} s: the model kept generating the cancelled request. Check "
               "request.is_cancelled() before each step, and end that stream with the FINAL flag")

    def bad_input() -> None:
        grading.found["stub"] = [p.pid for p in grading.server.stub_processes(MODEL)]
        for case, body in BAD_REQUESTS.items():
            try:
                answer = requests.post(url(), json=body, timeout=(5, WAIT_S))
            except requests.RequestException as error:
                if not _timed_out(error):
                    raise
                raise Fail(f"{case}: no answer within {WAIT_S} s. An exception in execute() leaves the request open: "
                           "catch the ValueError and send it as an error response, "
                           "pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError."
                           "INVALID_ARG)), with the FINAL flag") from None
            message = answer.text.strip().removeprefix("data: ")
            expect("Failed to process the request" not in message,
                   f"{case}: the client got Triton's report of an exception raised out of execute() ({message[:90]}...), "
                   "a traceback that names the server's files: catch the ValueError and send its message as the "
                   "error response, with TritonError.INVALID_ARG and the FINAL flag")
            expect(answer.status_code == 400, f"{case}: got HTTP {answer.status_code} {message[:120]}; a request the "
                   "model cannot serve gets TritonError.INVALID_ARG (HTTP 400) with the reason"
                   + ("; check it with self.limits.check(...)" if answer.status_code == 200 else ""))
            expect(len(message) > len('{"error":""}'), f"{case}: HTTP 400 with no message; say what is wrong")
        _, errors = _grpc_stream(grading.server.grpc_client(), b"\xff\xfe not UTF-8", max_tokens=5)
        expect(bool(errors), "a prompt that is not UTF-8 was served: decode text_input strictly (bytes.decode('utf-8') "
               "raises) and answer INVALID_ARG")

    def serves_on() -> None:
        expect([p.pid for p in grading.server.stub_processes(MODEL)] == grading.found["stub"],
               "the model's stub process changed during the bad requests: it crashed")
        _, pieces, errors = _stream(url(), {"text_input": "Flat is"})
        expect(not errors and "".join(pieces) == complete(lm, "Flat is"),
               f"after the bad requests a good one got {''.join(pieces)!r} {errors}")

    checks = [RUBRIC.check("9.1", "Triton loads model.py as a decoupled model and it answers a request", loads),
              RUBRIC.check("9.2", "the streamed text is in-process greedy decoding", greedy_text, ("9.1",)),
              RUBRIC.check("9.3", "pieces arrive as they are made: the first long before the last", streams, ("9.2",)),
              RUBRIC.check("9.4", "max_tokens, temperature, seed and ignore_eos are honoured (gRPC stream)", options, ("9.2",)),
              RUBRIC.check("9.5", "a cancelled request stops generating within a few steps", cancels, ("9.3",)),
              RUBRIC.check("9.6", "bad input (empty, too long, max_tokens or temperature out of range, not UTF-8) "
                                  "gets an error with a message (HTTP 400)", bad_input, ("9.1",)),
              RUBRIC.check("9.7", "after the bad requests the same stub process streams correctly", serves_on, ("9.6",))]
    return grading.run(checks, show=show)
