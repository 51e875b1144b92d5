"""TorchServe handler for the digit CNN: an image in, the top-k digits out.

Accepted request bodies: the bytes of a PNG/JPEG/BMP image (curl -T digit.png, or
Content-Type image/png), or JSON {"data": "<base64 of the image bytes>"}.
The image is converted to grayscale and resized to 8x8 (white digit on black,
like scikit-learn's digits). Answer: {"predictions": [{"class_id": 3,
"class_name": "three", "probability": 0.98}, ...]} with the TOP_K best classes.

Introduced in 02_handlers.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from batch_safe import BadRequest, BatchSafeHandler, request_body

TOP_K = 3
SIZE = 8
MAX_PIXELS = 4_000_000   # refuse larger images from their header, before decoding a single pixel


class DigitHandler(BatchSafeHandler):
    """Decodes one image, resizes it to 8x8 and returns the top-k digits."""

    def parse_row(self, row: dict) -> torch.Tensor:
        image = self._open_image(self._image_bytes(request_body(row)))
        gray = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX)
        pixels = np.asarray(gray, dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0)  # (1, 8, 8)

    @staticmethod
    def _image_bytes(body) -> bytes:
        if isinstance(body, dict) and "data" in body:
            body = body["data"]
        if isinstance(body, str):
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("a text body must be the base64 of an image; "
                                 "or send the raw image bytes (curl -T digit.png)") from None
        if isinstance(body, (bytes, bytearray)):
            return bytes(body)
        raise BadRequest(f"expected image bytes or JSON {{\"data\": \"<base64>\"}}, got {type(body).__name__}")

    @staticmethod
    def _open_image(data: bytes) -> Image.Image:
        """Decode one image, refusing oversized ones and decompression bombs (PNG, zTXt, iCCP)."""
        try:
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])   # reads the header only
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadRequest(f"image is {width}x{height} = {width * height} pixels; at most {MAX_PIXELS} "
                                 "are accepted (a digit needs 8x8)", status=413)
            image.load()
            return image
        except BadRequest:
            raise
        except Image.DecompressionBombError as err:
            raise BadRequest(f"image refused as a decompression bomb ({err}); send a small PNG or JPEG",
                             status=413) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            # ValueError: PIL's "Decompressed Data Too Large" for zTXt/iTXt/iCCP chunks, and broken headers
            raise BadRequest(f"could not decode the body as an image ({len(data)} bytes, "
                             f"{err.__class__.__name__}): send PNG or JPEG bytes") from None

    def describe(self, probabilities: torch.Tensor) -> dict:
        top = torch.topk(probabilities, k=min(TOP_K, probabilities.numel()))
        names = self.mapping or {}
        return {"predictions": [
            {"class_id": int(i), "class_name": names.get(str(int(i)), str(int(i))), "probability": round(float(p), 4)}
            for p, i in zip(top.values, top.indices)
        ]}
