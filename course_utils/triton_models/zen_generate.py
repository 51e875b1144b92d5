"""A decoupled Triton Python-backend model that streams the course's language model, one response per text piece.

Lesson 14 serves it. The version folder holds this file as model.py, the model's code
(language_model.py, a copy of course_utils/language_model.py), its weights (zen_lm.pt) and its
tokenizer (tokenizer.json); config.pbtxt sets `model_transaction_policy { decoupled: true }`,
so that one request may get many responses: each new piece of text is sent through the
request's response sender as soon as it exists, and the stream ends with the FINAL flag.

Inputs: text_input (the prompt), and optionally max_tokens, temperature, seed, ignore_eos.
Output: text_output, the new text of one step (the prompt is not repeated).
Parameters (config.pbtxt): max_prompt_tokens, max_tokens_limit, slots, step_delay_ms (slows every
step down, so that a lesson can watch a stream), fail_at_step (a fault at that step, to see what a
client gets).

What the model owes each client:
* a request it cannot serve (no prompt, not UTF-8, empty, too long, max_tokens or temperature out of
  range) gets one error response with INVALID_ARG that names what is wrong (over HTTP a 400); the others are
  served. Every request gets a FINAL response, whatever fails: a stream left open hangs its client;
* a request whose client cancels it (gRPC stream cancel, or the HTTP client going away) stops at
  the next step, frees its KV-cache slot and says so in the server log;
* an error in the middle of a stream reaches the client as an error response, not a hang.
The requests of one execute() decode together, one step for all, until the last one is done. Lesson 14
deploys it with max_batch_size 0, so each execute() holds one request and the instance serves one
stream at a time; with a dynamic batcher in front it would be static (request-level) batching.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the model's own code, beside this file
from language_model import DEFAULTS, Limits, TextStream, served_model  # noqa: E402



class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer, self.decoder = served_model(folder, slots=int(params.get("slots", "8")))
        self.limits = Limits(max_prompt_tokens=int(params.get("max_prompt_tokens", "128")),
                             max_tokens=int(params.get("max_tokens_limit", "128")))
        self.step_delay_s = float(params.get("step_delay_ms", "0")) / 1000
        self.fail_at_step = int(params.get("fail_at_step", "0"))
        self.log = pb_utils.Logger

    def _start(self, request):
        """The request's Generation, or ValueError naming what is wrong with it."""
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
        ids, options = self.limits.check(self.tokenizer, prompt[0], options)
        return self.decoder.add(ids, options["max_tokens"], options["temperature"], options["seed"],
                                stop_at_eos=not options["ignore_eos"])

    @staticmethod
    def _piece(text):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))])

    @staticmethod
    def _error(message, code):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))

    def execute(self, requests):
        """Start every request it can, then one decoding step for all of them until the last one is done."""
        running = []   # [request, response sender, Generation, TextStream]
        for request in requests:
            sender = request.get_response_sender()
            try:
                running.append([request, sender, self._start(request), TextStream(self.tokenizer)])
            except ValueError as error:
                sender.send(self._error(str(error), pb_utils.TritonError.INVALID_ARG),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except Exception as error:  # noqa: BLE001 - a request nobody foresaw: answered, never left hanging
                sender.send(self._error(f"the model could not start this request ({type(error).__name__}: {error})",
                                        pb_utils.TritonError.INTERNAL),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        step = 0
        while running:
            for item in [item for item in running if item[0].is_cancelled()]:
                self.log.log_info(f"zen: request {item[0].request_id() or '(no id)'} cancelled by its client "
                                  f"after {len(item[2].generated)} tokens; its slot is free")
                self._close(item, running, self._error("the request was cancelled", pb_utils.TritonError.CANCELLED),
                            "cancelled")
            if not running:
                break
            step += 1
            try:
                if step == self.fail_at_step:
                    raise RuntimeError(f"a fault injected at step {step} (parameter fail_at_step)")
                tokens = self.decoder.step([item[2] for item in running])
            except Exception as error:  # noqa: BLE001 - a failure mid-stream goes to every client it affects
                for item in list(running):
                    self._close(item, running, self._error(f"generation failed at step {step}: {error}",
                                                           pb_utils.TritonError.INTERNAL), "failed")
                break
            for item, token in zip(list(running), tokens):
                piece = item[3].push(token) if token is not None else ""
                if piece:
                    item[1].send(self._piece(piece))
                if item[2].finish_reason:
                    self._close(item, running)
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
        return None

    def _close(self, item, running, error=None, reason=""):
        """End one request's stream (with an error response, if any) and free its KV-cache slot."""
        self.decoder.finish(item[2], reason)
        if error is None:
            rest = item[3].flush()   # the sequence may end inside a UTF-8 character
            if rest:
                item[1].send(self._piece(rest))
            item[1].send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            item[1].send(error, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        running.remove(item)
