"""TorchServe handler that streams the course's language model: one HTTP chunk (or gRPC message) per text piece.

Request body (Content-Type: application/json), the same fields as the Triton model's inputs:
    {"text_input": "Beautiful is", "max_tokens": 20, "temperature": 0, "seed": 0, "ignore_eos": false}
Answer: the generated text, streamed. Over HTTP each piece is a chunk of a chunked response; over
gRPC (`StreamPredictions`) each piece is one PredictionResponse.

How TorchServe 0.12 streams: the handler sends each piece with
`ts.handler_utils.utils.send_intermediate_predict_response(...)` (the frontend forwards it at once,
marked "more to come"), and the value handle() returns is the last piece.

Archive it with the model's code beside it (torch-model-archiver --extra-files
language_model.py,tokenizer.json,batch_safe.py); model-config.yaml's `handler:` section may set
max_prompt_tokens, max_tokens_limit, step_delay_ms and fail_at_step (a fault at that step, for lessons). A request it cannot serve gets HTTP 400 with
the reason (BatchSafe's ASCII-safe message), the others of the batch are served.

One trap of 0.12: gRPC StreamPredictions reads the header ts_stream_next of every answer, and an answer
without it (a 400, or an answer that streamed no piece) throws in the frontend, which then restarts the
worker; over HTTP the same header on such an answer leaves the client waiting. So only a gRPC request
that streamed nothing gets ts_stream_next=false (TorchServe hands a REST request's HTTP headers and
url_path to the handler, a gRPC request's only its inputs); after a streamed piece TorchServe sets it. TorchServe 0.12
does not tell a handler that a client went away: a stream whose client left runs to its end, which
is why max_tokens is capped. Introduced in 14_streaming.
"""

from __future__ import annotations

import logging
import time

from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from batch_safe import BadRequest, json_body, safe_message
from language_model import Limits, TextStream, served_model

logger = logging.getLogger(__name__)
EXAMPLE = '{"text_input": "Beautiful is", "max_tokens": 20}'


class ZenStreamHandler(BaseHandler):
    """Parses each request, then decodes the batch's requests together and streams every step's text."""

    def initialize(self, context) -> None:
        settings = (context.model_yaml_config or {}).get("handler", {})
        self.tokenizer, self.decoder = served_model(context.system_properties["model_dir"],
                                                    context.manifest["model"]["serializedFile"],
                                                    slots=int(settings.get("slots", 8)))
        self.limits = Limits.from_settings(settings)
        self.step_delay_s = float(settings.get("step_delay_ms", 0)) / 1000
        self.fail_at_step = int(settings.get("fail_at_step", 0))   # lessons: a fault at this step, to see it arrive
        self.initialized = True

    def _start(self, row: dict):
        body = json_body(row, EXAMPLE)
        if not isinstance(body, dict) or "text_input" not in body:
            raise BadRequest(f'send a JSON object with the prompt in "text_input", such as {EXAMPLE}')
        try:
            ids, options = self.limits.check(self.tokenizer, body["text_input"],
                                             {k: v for k, v in body.items() if k != "text_input"})
        except ValueError as error:
            raise BadRequest(str(error)) from None
        return self.decoder.add(ids, options["max_tokens"], options["temperature"], options["seed"],
                                stop_at_eos=not options["ignore_eos"])

    def handle(self, data: list[dict], context) -> list[str | dict]:
        """Send every step's new text as it is made; return each request's error, or the rest of its text to end its stream."""
        answers: list[str | dict] = [""] * len(data)
        running = {}   # index in the batch -> (Generation, TextStream)
        streamed = set()   # indexes that have sent at least one piece
        for index, row in enumerate(data):
            try:
                running[index] = (self._start(row), TextStream(self.tokenizer))
            except BadRequest as error:
                context.set_response_status(error.status, safe_message(error), index)
                answers[index] = {"code": error.status, "type": "BadRequest", "message": safe_message(error)}
        step = 0
        while running:
            step += 1
            try:
                if step == self.fail_at_step:
                    raise RuntimeError(f"a fault injected at step {step} (setting fail_at_step)")
                tokens = self.decoder.step([sequence for sequence, _ in running.values()])
            except Exception as error:  # noqa: BLE001 - mid-stream: every running request ends with the error
                logger.exception("zen: generation failed")
                for index, (sequence, _) in running.items():
                    self.decoder.finish(sequence, "failed")
                    message = safe_message(f"generation failed: {type(error).__name__}: {error}")
                    context.set_response_status(500, message, index)
                    answers[index] = {"code": 500, "type": "InternalServerError", "message": message}
                break
            for (index, (sequence, text)), token in zip(list(running.items()), tokens):
                piece = text.push(token) if token is not None else ""
                if piece:   # to this request's client now, marked "more to come"
                    send_intermediate_predict_response({index: piece}, {index: context.request_ids[index]},
                                                       "streaming", 200, context)
                    streamed.add(index)
                if sequence.finish_reason:
                    self.decoder.finish(sequence)
                    del running[index]
                    answers[index] = text.flush()   # the sequence may end inside a UTF-8 character
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
        for index in range(len(data)):
            if index not in streamed and context.get_request_header(index, "url_path") is None:
                context.set_response_header(index, "ts_stream_next", "false")   # a gRPC stream with no piece
        return answers
