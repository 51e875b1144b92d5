"""A TorchServe base handler where bad input fails only its own request.

TorchServe hands a handler a *batch* of requests. Raising an exception (even
`PredictionException(msg, 400)`) fails every request in that batch, so one
client's typo would fail its neighbours' requests. This base class validates
each request separately: a request whose input is wrong gets HTTP 400 (413 for an
image over the pixel cap) with a message saying what was expected; the others are
still predicted. Bodies over 1 MiB never reach a handler: the course's TorchServe
answers them with 413 itself (max_request_size). An input nobody foresaw that makes parse_row fail gets HTTP 500 with
the exception named, for that request only: the worker and the batch survive.

Messages are made ASCII-safe: TorchServe 0.12 frames the HTTP reason phrase by
its length in characters but writes it as UTF-8 bytes, so one "é" in a message
breaks the framing and kills the worker.

Subclasses implement two methods:
  parse_row(body)      -> torch.Tensor for one request, or raise BadRequest("...")
  describe(probs)      -> JSON-able dict for one row of class probabilities

This file is archived next to each handler (torch-model-archiver --extra-files),
so it must import only torch and TorchServe. Introduced in 02_handlers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
import torch.nn.functional as F
from ts.torch_handler.base_handler import BaseHandler

logger = logging.getLogger(__name__)


MAX_MESSAGE_CHARS = 300


class BadRequest(ValueError):
    """Input the client must fix; answered with HTTP `status` (400 unless told) and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def safe_message(text: object) -> str:
    """One line of ASCII (other characters as \\xe9-style escapes), at most 300 characters."""
    line = " ".join(str(text).split()).encode("ascii", "backslashreplace").decode("ascii")
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS - 3] + "..."


def short_repr(value: object, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters, safe for huge or deeply nested values."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):   # ints over 4300 digits, very deep lists
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def request_body(row: dict) -> Any:
    """Return what the client sent: TorchServe puts it under "data" or "body"."""
    body = row.get("data")
    if body is None:
        body = row.get("body")
    if body is None or (isinstance(body, (bytes, bytearray, str)) and len(body) == 0):
        raise BadRequest("empty request body: send the input in the request body")
    return body


def json_body(row: dict, example: str = '{"data": [...]}') -> Any:
    """Return the request body as parsed JSON (TorchServe pre-parses application/json); errors show `example`."""
    body = request_body(row)
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except RecursionError:
            raise BadRequest("body is JSON nested too deeply to read; send a flat JSON list "
                             "such as {\"data\": [...]}") from None
        except ValueError as err:   # not JSON, not UTF-8, or a number with over 4300 digits
            if "digits" in str(err):
                raise BadRequest("a number in the body has more than 4300 digits; "
                                 "send numbers such as {\"data\": [24, 80.5, 2, 12]}") from None
            raise BadRequest(f"body is not valid JSON ({err.__class__.__name__}): send JSON such as {example}") from None
    return body


class BatchSafeHandler(BaseHandler):
    """BaseHandler whose bad rows become per-request HTTP 400 answers."""

    def parse_row(self, body_row: dict) -> torch.Tensor:
        raise NotImplementedError("subclasses turn one request into one input tensor")

    def describe(self, probabilities: torch.Tensor) -> dict:
        raise NotImplementedError("subclasses turn one row of probabilities into a JSON answer")

    def preprocess(self, data: list[dict]) -> torch.Tensor | None:
        """Parse every request; remember which ones were bad and why."""
        self.row_errors: dict[int, tuple[int, str]] = {}
        tensors = []
        for idx, row in enumerate(data):
            try:
                tensors.append(self.parse_row(row))
            except BadRequest as err:
                self.row_errors[idx] = (err.status, safe_message(err))
            except Exception as err:   # a bug, or an input nobody foresaw: this request fails, not the batch
                logger.exception("parse_row failed on request %d of the batch", idx)
                self.row_errors[idx] = (500, safe_message(f"the handler failed on this request "
                                                          f"({type(err).__name__}: {err})"))
        logger.info("batch_size=%d bad_rows=%d", len(data), len(self.row_errors))
        return torch.stack(tensors).to(self.device) if tensors else None

    def inference(self, batch: torch.Tensor | None, *args, **kwargs) -> torch.Tensor | None:
        """Run the model on the good rows only and turn logits into probabilities."""
        if batch is None:
            return None
        with torch.inference_mode():
            return F.softmax(self.model(batch), dim=1)

    def postprocess(self, probabilities: torch.Tensor | None) -> list[dict]:
        return [] if probabilities is None else [self.describe(p) for p in probabilities]

    def handle(self, data: list[dict], context) -> list[dict]:
        """preprocess -> inference -> postprocess, then put the 400s back in their places."""
        self.context = context
        answers = iter(self.postprocess(self.inference(self.preprocess(data))))
        responses = []
        for idx in range(len(data)):
            if idx in self.row_errors:
                status, message = self.row_errors[idx]
                context.set_response_status(status, message, idx)
                responses.append({"code": status, "type": "BadRequest" if status < 500 else "InternalServerError",
                                  "message": message})
            else:
                responses.append(next(answers))
        return responses
