"""Triton Python-backend model: PNG/JPEG bytes -> a normalized 1x8x8 float image.

The first step of the digit pipeline (lesson 08). Input IMAGE_BYTES (TYPE_STRING,
one encoded image per sample); output PIXELS (TYPE_FP32, [1, 8, 8]) in [0, 1],
white digit on black, exactly what the digit classifier was trained on.
A request that is not an image gets an error response; the others in the batch
are still answered.
"""

import io

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, UnidentifiedImageError

SIZE = 8
MAX_PIXELS = 4_000_000   # refuse larger images from their header, before decoding a single pixel


def decode(data: bytes) -> np.ndarray:
    """One encoded image -> float32 array of shape (1, 8, 8) in [0, 1]; ValueError names a bad input."""
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])   # reads the header only
        width, height = image.size
        if width * height <= MAX_PIXELS:
            image.load()
    except Image.DecompressionBombError as error:
        raise ValueError(f"IMAGE_BYTES refused as a decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # ValueError: Pillow's "Decompressed data too large" for zTXt/iTXt/iCCP chunks, and broken headers
        raise ValueError(f"IMAGE_BYTES is not a PNG/JPEG image ({len(data)} bytes, {type(error).__name__}); "
                         "send the bytes of an encoded image file, one per sample") from None
    if width * height > MAX_PIXELS:
        raise ValueError(f"IMAGE_BYTES holds a {width}x{height} image; at most {MAX_PIXELS} pixels "
                         "are accepted (a digit needs 8x8)")
    gray = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX)
    return (np.asarray(gray, dtype=np.float32) / 255.0)[None, :, :]


def error_response(message: str, code: int) -> "pb_utils.InferenceResponse":
    """An error answer for one request, its message one ASCII line."""
    line = " ".join(message.split()).encode("ascii", "backslashreplace").decode("ascii")[:300]
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(line, code))


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE_BYTES").as_numpy().reshape(-1)
            try:
                pixels = np.stack([decode(bytes(item)) for item in encoded])
            except ValueError as error:
                # INVALID_ARG: the client's input is wrong, so HTTP 400 (not 500) for this request only.
                responses.append(error_response(str(error), pb_utils.TritonError.INVALID_ARG))
                continue
            except Exception as error:   # noqa: BLE001 - an image Pillow chokes on fails this request only
                responses.append(error_response(f"could not decode IMAGE_BYTES ({type(error).__name__}: {error})",
                                                pb_utils.TritonError.INTERNAL))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PIXELS", pixels)]))
        return responses
