"""TorchServe handler for raw float32 tensors: the request body is the sample's bytes, nothing else.

JSON costs little for four numbers but a lot for an image: a 3x224x224 float32 sample is 602 KB of
bytes and several MB of JSON text. This handler takes the bytes as they are
(`Content-Type: application/octet-stream`) and answers {"prediction": <class index>}.
The sample's shape comes from model-config.yaml, so one handler serves any model:

    handler:
      shape: [3, 224, 224]

Each worker computes on one thread, like the in-process measurements it is compared with.
Archive it with batch_safe.py as --extra-files. Introduced in 12_serving_share.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from batch_safe import BadRequest, BatchSafeHandler, request_body


class TensorHandler(BatchSafeHandler):
    """One float32 sample per request, as raw bytes, of the shape model-config.yaml names."""

    def initialize(self, context) -> None:
        super().initialize(context)
        torch.set_num_threads(1)
        shape = context.model_yaml_config.get("handler", {}).get("shape")
        if not shape:
            raise ValueError("model-config.yaml needs `handler: {shape: [...]}`: the shape of one sample")
        self.shape = tuple(int(n) for n in shape)
        self.sample_bytes = 4 * math.prod(self.shape)

    def parse_row(self, row: dict) -> torch.Tensor:
        body = request_body(row)
        if isinstance(body, str):
            body = body.encode("utf-8")   # the worker decoded a text part as UTF-8: undo exactly that
        if not isinstance(body, (bytes, bytearray)):
            raise BadRequest(f"send the sample as raw float32 bytes (application/octet-stream), "
                             f"not {type(body).__name__}")
        if len(body) != self.sample_bytes:
            raise BadRequest(f"expected {self.sample_bytes} bytes (float32 of shape {list(self.shape)}), "
                             f"got {len(body)}")
        sample = np.frombuffer(bytes(body), dtype=np.float32).reshape(self.shape)
        if not np.isfinite(sample).all():
            raise BadRequest("the sample contains NaN or infinity; send finite float32 values")
        return torch.from_numpy(sample.copy())

    def describe(self, probabilities: torch.Tensor) -> dict:
        return {"prediction": int(probabilities.argmax())}
