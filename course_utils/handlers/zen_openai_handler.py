"""TorchServe handler: OpenAI's completions API for the course's language model, continuously batched.

The route. TorchServe 0.12 hands whatever follows a model's predictions URL to the handler as the
request header `url_path`: POST /predictions/zen/1.0/v1/completions arrives here with url_path
"v1/completions". So an OpenAI client with base_url http://127.0.0.1:PORT/predictions/zen/1.0/v1
and the inference token as its api_key (TorchServe reads `Authorization: Bearer ...`, as OpenAI
does) calls this handler. TorchServe's own vLLM handler routes OpenAI calls the same way.

The batching. With `continuousBatching: true` in model-config.yaml, TorchServe calls handle() once
per decoding step with every request still running (up to batchSize) and the new ones that arrived
since the last step. Each call answers every request with its next piece; `context.stopping_criteria`
tells the frontend which requests are done (their answer ends) and which come back for the next
step. A request whose client went away is dropped by the frontend between two steps; the handler
frees its KV-cache slot at the next step. Each call gives exactly one answer per request: the
frontend reads any further message (send_intermediate_predict_response) as the next step's answers.

The protocol, as OpenAI documents it: the body's `prompt` (one string), `max_tokens` (default 16),
`temperature` (default 1), `seed`, `stream` and `stream_options.include_usage`, and vLLM's `ignore_eos` (benchmarks send it to fix
output lengths); any other field is refused, as are a wrong `model` and a request that is not JSON.
With `stream: true` the answer is server-sent events, one `text_completion` chunk per piece and
`data: [DONE]`; without, one JSON object with `usage`. Fields OpenAI has and this server does not
implement (n, top_p, stop, ...) are accepted at their neutral value only; null means "not given"; no
seed means a fresh one per call. Errors found before a request's first answer are OpenAI's
`{"error": {"message", "type", ...}}` with a 4xx status; a fault in a later step (the 200 is sent)
arrives as an error event of the stream, or as the error body of a 200. Chat completions are not
served: the course's model is not chat-tuned. Introduced in 16_openai_api.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid

from ts.torch_handler.base_handler import BaseHandler

from batch_safe import BadRequest, json_body, safe_message
from language_model import Generation, Limits, TextStream, served_model

logger = logging.getLogger(__name__)
ENDPOINT = "v1/completions"
FIELDS = {"model", "prompt", "max_tokens", "temperature", "seed", "stream", "stream_options",
          "ignore_eos"}   # ignore_eos: vLLM's extension
OPENAI_DEFAULTS = {"max_tokens": 16, "temperature": 1.0}   # OpenAI's, not the course's greedy defaults
# OpenAI fields this server does not implement, accepted at the value that changes nothing (clients such as
# LangChain send some of them always); any other value is refused with the reason
NEUTRAL = {"n": 1, "best_of": 1, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0, "echo": False,
           "logprobs": None, "stop": None, "suffix": None, "logit_bias": None, "user": None}


def openai_error(message: str, status: int) -> str:
    """OpenAI's error body."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


class ZenOpenAIHandler(BaseHandler):
    """Each call is one decoding step of every running request; new requests join between steps."""

    class Completion:   # nested: TorchServe wants one class per handler module
        """One running request: its generation, its text so far, and how its answer is written."""

        def __init__(self, generation: Generation, text: TextStream, model: str, stream: bool,
                     include_usage: bool = False) -> None:
            self.generation, self.text, self.model, self.stream = generation, text, model, stream
            self.include_usage = include_usage   # stream_options.include_usage: a last chunk with the usage
            self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
            self.created = int(time.time())
            self.pieces: list[str] = []

        def chunk(self, text: str, finish_reason: str | None) -> dict:
            return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]}

        def answer(self, piece: str, done: bool) -> str:
            """What this step sends: an SSE event (and [DONE] at the end) when streaming, else the whole JSON at the end."""
            self.pieces.append(piece)
            reason = self.generation.finish_reason if done else None
            if self.stream:
                events = f"data: {json.dumps(self.chunk(piece, None))}\n\n" if piece else ""
                if done:
                    events += f"data: {json.dumps(self.chunk('', reason))}\n\n"
                    if self.include_usage:
                        events += f"data: {json.dumps({**self.chunk('', None), 'choices': [], 'usage': self.usage()})}\n\n"
                    events += "data: [DONE]\n\n"
                return events
            if not done:
                return ""
            return json.dumps({**self.chunk("".join(self.pieces), reason), "usage": self.usage()})

        def usage(self) -> dict:
            prompt, completion = self.generation.prompt_length, len(self.generation.generated)
            return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def initialize(self, context) -> None:
        settings = (context.model_yaml_config or {}).get("handler", {})
        self.model_name = context.manifest["model"]["modelName"]
        self.tokenizer, self.decoder = served_model(context.system_properties["model_dir"],
                                                    context.manifest["model"]["serializedFile"],
                                                    slots=int(settings.get("slots", 8)))
        self.limits = Limits.from_settings(settings)
        batch_size = int(context.system_properties.get("batch_size") or 1)
        if batch_size > self.decoder.cache.slots:   # a step would hold more requests than the KV cache has slots
            raise ValueError(f"batchSize {batch_size} is more than the model's {self.decoder.cache.slots} KV-cache "
                             "slots: lower batchSize or raise the handler setting slots")
        self.running: dict[str, ZenOpenAIHandler.Completion] = {}   # TorchServe's request id -> its completion
        # request ids whose whole answer (an error, or a first answer that was also the last) went out
        # in the last step: if TorchServe sends one again, its stream is ended
        self.answered: set[str] = set()
        self.initialized = True

    def _start(self, row: dict, url_path: str | None) -> "ZenOpenAIHandler.Completion":
        if url_path != ENDPOINT:
            raise BadRequest(f"this model speaks OpenAI's completions API: POST /predictions/{self.model_name}"
                             f"/1.0/{ENDPOINT} (an OpenAI client's base_url ends in /v1); got path {url_path!r}", 404)
        body = json_body(row, '{"model": "zen", "prompt": "Beautiful is", "max_tokens": 16}')
        if not isinstance(body, dict):
            raise BadRequest("send a JSON object such as {\"model\": \"zen\", \"prompt\": \"Beautiful is\"}")
        body = {key: value for key, value in body.items() if value is not None}   # OpenAI: null is "not given"
        unknown = sorted(set(body) - FIELDS - set(NEUTRAL))
        if unknown:
            raise BadRequest(f"unsupported field(s) {unknown}; this server reads {sorted(FIELDS)}")
        for name in sorted(set(body) & set(NEUTRAL)):
            if name != "user" and body[name] != NEUTRAL[name] and body[name] not in ({}, []):
                raise BadRequest(f"{name} {body[name]!r} is not supported; this server implements only {name}="
                                 f"{json.dumps(NEUTRAL[name])}")
        if body.get("model") != self.model_name:
            raise BadRequest(f"the model {body.get('model')!r} does not exist; this endpoint serves "
                             f"{self.model_name!r}", 404)
        if not isinstance(body.get("stream", False), bool):
            raise BadRequest(f"stream is {body['stream']!r}; use true or false")
        stream_options = body.get("stream_options", {})
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"} \
                or not isinstance(stream_options.get("include_usage", False), bool):
            raise BadRequest(f"stream_options is {stream_options!r}; this server reads only "
                             '{"include_usage": true or false}')
        options = {**OPENAI_DEFAULTS, "seed": secrets.randbits(62),   # no seed: each call samples anew
                   **{k: body[k] for k in ("max_tokens", "temperature", "seed", "ignore_eos") if k in body}}
        try:
            ids, options = self.limits.check(self.tokenizer, body.get("prompt"), options)
            generation = self.decoder.add(ids, options["max_tokens"], options["temperature"], options["seed"],
                                          stop_at_eos=not options["ignore_eos"])
        except ValueError as error:   # the prompt, an option, or prompt + max_tokens beyond the context
            raise BadRequest(str(error)) from None
        return self.Completion(generation, TextStream(self.tokenizer), self.model_name, body.get("stream", False),
                               include_usage=stream_options.get("include_usage", False))

    def _forget_the_departed(self, present: set[str]) -> None:
        """Free the slot of each request TorchServe no longer sends: its client went away."""
        for request_id in set(self.running) - present:
            completion = self.running.pop(request_id)
            self.decoder.finish(completion.generation, "cancelled")
            logger.info("zen_openai: %s cancelled by its client after %d tokens", completion.id,
                        len(completion.generation.generated))
        self.answered &= present   # one that is not back is gone (an error closes its connection)

    @staticmethod
    def _refuse(context, index: int, status: int, message: str) -> str:
        """An error answer: a whole (not streamed) response, since TorchServe closes the connection after a 4xx/5xx."""
        context.set_response_status(status, safe_message(message), index)
        context.set_response_content_type(index, "application/json")
        return openai_error(safe_message(message), status)

    def handle(self, data: list[dict], context) -> list[str]:
        """One step: start the new requests, decode one token for every running one, answer each with its piece."""
        request_ids = [context.request_ids[index] for index in range(len(data))]
        self._forget_the_departed(set(request_ids))
        answers: list[str] = [""] * len(data)
        # per request, what context.stopping_criteria tells TorchServe: True ends its stream, False
        # keeps it coming back, None sends a whole response (an error)
        stop: list[bool | None] = [False] * len(data)
        new = set()
        for index, (request_id, row) in enumerate(zip(request_ids, data)):
            if request_id in self.answered:   # its whole answer went out: end its stream
                self.answered.discard(request_id)
                stop[index] = True
            elif request_id not in self.running:
                try:
                    completion = self._start(row, context.get_request_header(index, "url_path"))
                except BadRequest as error:
                    answers[index], stop[index] = self._refuse(context, index, error.status, str(error)), None
                    self.answered.add(request_id)
                    continue
                self.running[request_id] = completion
                new.add(index)
                context.set_response_content_type(index, "text/event-stream" if completion.stream else "application/json")
        stepping = [(index, self.running[rid]) for index, rid in enumerate(request_ids) if rid in self.running]
        try:
            tokens = self.decoder.step([completion.generation for _, completion in stepping])
        except Exception as error:  # noqa: BLE001 - every running request ends with the error, the worker lives
            logger.exception("zen_openai: generation failed")
            tokens, failure = None, f"generation failed: {type(error).__name__}: {error}"
        for position, (index, completion) in enumerate(stepping):
            if tokens is None:
                completion.generation.finish_reason = "error"
                if index in new:
                    answers[index], stop[index] = self._refuse(context, index, 500, failure), None
                    self.answered.add(request_ids[index])
                else:   # the stream's status line (200) is sent: the error is its last event
                    error = openai_error(safe_message(failure), 500)
                    answers[index], stop[index] = (f"data: {error}\n\n" if completion.stream else error), True
            else:
                token = tokens[position]
                piece = completion.text.push(token) if token is not None else ""
                finished = bool(completion.generation.finish_reason)
                answers[index] = completion.answer(piece + (completion.text.flush() if finished else ""), finished)
                stop[index] = finished
            if completion.generation.finish_reason:
                self.decoder.finish(completion.generation)
                del self.running[request_ids[index]]
        # A request done in the step that answers it first: an answer that ends a stream must follow
        # one that began it (else TorchServe sends the end of a chunked body without its headers),
        # so its answer goes out marked "more to come" and the next step ends it with an empty one.
        for index in new:
            if stop[index] is True:
                stop[index] = False
                self.answered.add(request_ids[index])
        context.stopping_criteria = [lambda _answer, verdict=verdict: verdict for verdict in stop]
        return answers
