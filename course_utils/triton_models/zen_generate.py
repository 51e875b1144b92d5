"""A decoupled Triton Python-backend model that streams the course's language model, one response per text piece.

Lessons 14 and 15 serve it. The version folder holds this file as model.py, the model's code
(language_model.py, a copy of course_utils/language_model.py), its weights (zen_lm.pt) and its
tokenizer (tokenizer.json); config.pbtxt sets `model_transaction_policy { decoupled: true }`,
so that one request may get many responses: each new piece of text is sent through the
request's response sender as soon as it exists, and the stream ends with the FINAL flag.

Inputs: text_input (the prompt), and optionally max_tokens, temperature, seed, ignore_eos.
Output: text_output, the new text of one step (the prompt is not repeated).
Parameters (config.pbtxt): max_prompt_tokens, max_tokens_limit, slots, step_delay_ms (slows every
step down, so that a lesson can watch a stream), fail_at_step (a fault at that step, to see what a
client gets).

How it schedules is the config's choice, with the same code:
* without `sequence_batching` (lesson 14: max_batch_size 0; lesson 15: a dynamic batcher), execute()
  decodes the requests Triton hands it together, one step for all, until the last one is done: one
  request at a time, or static (request-level) batching;
* with the parameter `scheduler: continuous` (lesson 15), execute() only checks and queues requests; a
  loop on its own thread runs one step for every running sequence and, between any two steps, gives
  free KV-cache slots to waiting requests: continuous (iteration-level) batching, as LLM engines do;
* with `sequence_batching { iterative_sequence: true }` (lesson 15), execute() runs ONE step for the
  requests it is given and hands back those not done (`set_release_flags(RESCHEDULE)`): Triton forms
  the next batch from them and from new requests. Triton's sequence batcher gives each such request a
  correlation ID (when the client sends none), which keys its state here. A rescheduled request that
  Triton drops while it waits for its next step is not noticed: its slot stays taken.

What the model owes each client:
* a request it cannot serve (no prompt, not UTF-8, empty, too long, an option out of range) gets one
  error response with INVALID_ARG that names what is wrong (over HTTP a 400); the others are served.
  Every request gets a FINAL response, whatever fails: a stream left open hangs its client;
* a request whose client cancels it (gRPC stream cancel, or the HTTP client going away) stops at
  the next step, frees its KV-cache slot and says so in the server log;
* an error in the middle of a stream reaches the client as an error response, not a hang.
"""

import json
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the model's own code, beside this file
from language_model import DEFAULTS, Generation, Limits, TextStream, served_model  # noqa: E402


@dataclass
class Stream:
    """One request being streamed: the request (the latest object, when rescheduled), its sender, its sequence."""

    request: object
    sender: object
    generation: Generation
    text: TextStream


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer, self.decoder = served_model(folder, slots=int(params.get("slots", "8")))
        self.limits = Limits.from_settings(params)
        self.step_delay_s = float(params.get("step_delay_ms", "0")) / 1000
        self.fail_at_step = int(params.get("fail_at_step", "0"))
        self.iterative = config.get("sequence_batching", {}).get("iterative_sequence", False)
        self.streams = {}   # iterative: correlation ID -> the Stream of a request being rescheduled
        self.log = pb_utils.Logger
        self.in_model = params.get("scheduler") == "continuous"   # continuous batching by a loop in this model
        if self.in_model:
            self.waiting = queue.Queue()   # admitted requests that wait for a KV-cache slot
            self.stopping = threading.Event()
            self.loop = threading.Thread(target=self._run_loop, name="zen-scheduler", daemon=True)
            self.loop.start()

    def finalize(self):
        if self.in_model:
            self.stopping.set()
            self.loop.join(timeout=10)

    # ----- the two schedulers -------------------------------------------------------------------
    def execute(self, requests):
        """Static: decode the given requests together until the last one is done. Iterative: one step, then hand
        back. In-model: queue them for the model's own loop and return at once."""
        if self.in_model:
            for admitted in filter(None, map(self._admit, requests)):
                self.waiting.put(admitted)
            return None
        if not self.iterative:
            running = [self._begin(admitted) for admitted in map(self._admit, requests) if admitted]
            while running:
                running = self._step(running)
            return None
        running = []
        for request in requests:
            stream = self.streams.pop(request.correlation_id(), None)
            if stream is None:
                admitted = self._admit(request)
                stream = self._begin(admitted) if admitted else None
            else:
                stream.request = request   # the same request, handed back: its newest object
            if stream:
                running.append(stream)
        for stream in self._step(running):
            self.streams[stream.request.correlation_id()] = stream
            stream.request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
        return None

    def _run_loop(self):
        """The in-model scheduler: between any two steps, waiting requests take the free KV-cache slots."""
        running = []
        while not self.stopping.is_set():
            while len(running) < self.decoder.cache.slots:
                try:   # block only when nothing runs
                    admitted = self.waiting.get(timeout=0.1) if not running else self.waiting.get_nowait()
                except queue.Empty:
                    break
                stream = self._begin_waiting(admitted)
                if stream:
                    running.append(stream)
            try:
                running = self._step(running) if running else []
            except Exception as error:  # noqa: BLE001 - the loop serves everyone: it must never stop on one fault
                for stream in running:
                    self._close(stream, self._error(f"the scheduler failed: {error}", pb_utils.TritonError.INTERNAL),
                                "failed")
                running = []
        # the model is unloading: every stream still open ends with a reason, none is left hanging
        gone = self._error("the model is unloading", pb_utils.TritonError.UNAVAILABLE)
        for stream in running:
            self._close(stream, gone, "failed")
        while not self.waiting.empty():
            self.waiting.get_nowait()[1].send(gone, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _begin_waiting(self, admitted):
        """A waiting request's Stream, or None after answering it (cancelled while it waited, or it cannot start)."""
        request, sender = admitted[0], admitted[1]
        if request.is_cancelled():
            sender.send(self._error("the request was cancelled", pb_utils.TritonError.CANCELLED),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
        try:
            return self._begin(admitted)
        except Exception as error:  # noqa: BLE001 - this request fails, the loop goes on
            sender.send(self._error(f"the model could not start this request ({error})", pb_utils.TritonError.INTERNAL),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None

    def _admit(self, request):
        """(request, sender, prompt ids, options); or None after answering the error that says why it cannot be served."""
        sender = request.get_response_sender()
        try:
            return (request, sender, *self._check(request))
        except ValueError as error:
            sender.send(self._error(str(error), pb_utils.TritonError.INVALID_ARG),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as error:  # noqa: BLE001 - a request nobody foresaw: answered, never left hanging
            sender.send(self._error(f"the model could not start this request ({type(error).__name__}: {error})",
                                    pb_utils.TritonError.INTERNAL),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None

    def _begin(self, admitted):
        """Start an admitted request's sequence in a KV-cache slot."""
        request, sender, ids, options = admitted
        generation = self.decoder.add(ids, options["max_tokens"], options["temperature"], options["seed"],
                                      stop_at_eos=not options["ignore_eos"])
        return Stream(request, sender, generation, TextStream(self.tokenizer))

    def _step(self, running):
        """One decoding step for every running stream; send its piece; return the streams that go on."""
        for stream in [s for s in running if s.request.is_cancelled()]:
            self.log.log_info(f"zen: request {stream.request.request_id() or '(no id)'} cancelled by its client "
                              f"after {len(stream.generation.generated)} tokens; its slot is free")
            self._close(stream, self._error("the request was cancelled", pb_utils.TritonError.CANCELLED), "cancelled")
        running = [s for s in running if not s.generation.finish_reason]
        if not running:
            return []
        step = 1 + max(len(stream.generation.generated) for stream in running)   # the furthest request's step
        try:
            if step == self.fail_at_step:
                raise RuntimeError(f"a fault injected at step {step} (parameter fail_at_step)")
            tokens = self.decoder.step([stream.generation for stream in running])
        except Exception as error:  # noqa: BLE001 - a failure mid-stream goes to every client it affects
            for stream in running:
                self._close(stream, self._error(f"generation failed at step {step}: {error}",
                                                pb_utils.TritonError.INTERNAL), "failed")
            return []
        for stream, token in zip(running, tokens):
            piece = stream.text.push(token) if token is not None else ""
            if piece:
                stream.sender.send(self._piece(piece))
            if stream.generation.finish_reason:
                self._close(stream)
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        return [stream for stream in running if not stream.generation.finish_reason]

    # ----- one request ----------------------------------------------------------------------------
    def _check(self, request):
        """(prompt ids, options) of one request, or ValueError naming what is wrong with it."""
        options = {}
        for name in DEFAULTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:   # an optional input the client sent
                options[name] = tensor.as_numpy().reshape(-1)[0].item()
        tensor = pb_utils.get_input_tensor_by_name(request, "text_input")
        if tensor is None:   # Triton 2.51 lets a request through with only optional inputs
            raise ValueError('text_input is missing: send the prompt, e.g. {"text_input": "Beautiful is"}')
        prompt = tensor.as_numpy().reshape(-1)
        if prompt.size != 1:
            raise ValueError(f"text_input must hold one prompt, got {prompt.size}")
        return self.limits.check(self.tokenizer, prompt[0], options)

    def _close(self, stream, error=None, reason=""):
        """End one request's stream (with an error response, if any) and free its KV-cache slot."""
        self.decoder.finish(stream.generation, reason or stream.generation.finish_reason)
        if error is None:
            rest = stream.text.flush()   # the sequence may end inside a UTF-8 character
            if rest:
                stream.sender.send(self._piece(rest))
            stream.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            stream.sender.send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    @staticmethod
    def _piece(text):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))])

    @staticmethod
    def _error(message, code):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
