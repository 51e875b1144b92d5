"""Hostile inputs for the course's handlers, and a probe that shows one bad request hurts nobody else.

Each input is sent at the same moment as a good request, so that the server puts both into
one batch (the model must be served with batch_size >= 2). For every input the probe records
the bad request's status and message, the good neighbour's status, and whether the same
worker process is still serving afterwards.
"""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

JSON = {"Content-Type": "application/json"}


def _json_body(text: str | bytes) -> dict[str, Any]:
    return {"data": text.encode() if isinstance(text, str) else text, "headers": JSON}


def churn_hostile_inputs() -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments for requests.post: bad bodies for the churn model (JSON features).

    Introduced in 02_handlers.
    """
    deep = 100_000
    return {
        "non-ASCII value": _json_body('{"data": [24, "é", 2, 12]}'),
        "non-ASCII key": _json_body('{"tenure_mönths": 24}'),
        "emoji": _json_body('["\U0001F600", 80.5, 2, 12]'),
        "huge integer 10**400": _json_body(f"[{10**400}, 80.5, 2, 12]"),
        "integer of 5000 digits": _json_body("[" + "9" * 5000 + ", 80.5, 2, 12]"),
        "NaN": _json_body("[NaN, 80.5, 2, 12]"),
        "Infinity": _json_body("[24, Infinity, 2, 12]"),
        "-Infinity": _json_body("[24, 80.5, -Infinity, 12]"),
        "beyond float32 (1e39)": _json_body("[24, 1e39, 2, 12]"),
        f"nested {deep:,} deep": _json_body("[" * deep + "]" * deep),
        "list inside the list": _json_body("[[24], 80.5, 2, 12]"),
        "string for a number": _json_body('[24, "80.5", 2, 12]'),
        "boolean for a number": _json_body("[true, 80.5, 2, 12]"),
        "JSON null": _json_body("null"),
        "wrong length": _json_body("[24, 80.5, 2]"),
        "empty list": _json_body("[]"),
        "object without data": _json_body('{"x": 1}'),
        "empty body": _json_body(b""),
        "not JSON": _json_body("tenure=24"),
        "invalid UTF-8": _json_body(b'{"data": [\xff\xfe]}'),
        "2 MB body": _json_body("[" + "1," * 1_000_000 + "1]"),
    }


def triton_churn_hostile_inputs() -> dict[str, bytes]:
    """Name -> request body for Triton's JSON inference API: bad requests for a churn model (input "input", FP32 [4]).

    Nesting stays at 1,000 levels: 100,000 crash tritonserver 2.51 itself (its JSON parser
    recurses once per level), before any model code runs.

    Internal helper: no lesson calls it.
    """
    def v2(data: str, shape: str = "[1, 4]", datatype: str = "FP32", name: str = "input") -> bytes:
        return (f'{{"inputs": [{{"name": "{name}", "shape": {shape}, "datatype": "{datatype}", '
                f'"data": {data}}}]}}').encode()

    return {
        "non-ASCII value": v2('[24, "é", 2, 12]'),
        "huge integer 10**400": v2(f"[{10**400}, 80.5, 2, 12]"),
        "NaN": v2("[NaN, 80.5, 2, 12]"),
        "Infinity": v2("[24, Infinity, 2, 12]"),
        "beyond float32 (1e39)": v2("[24, 1e39, 2, 12]"),
        "string for a number": v2('[24, "80.5", 2, 12]'),
        "boolean for a number": v2("[true, 80.5, 2, 12]"),
        "wrong length": v2("[24, 80.5, 2]", shape="[1, 3]"),
        "fewer values than the shape": v2("[24, 80.5, 2]"),
        "wrong datatype": v2("[24, 80, 2, 12]", datatype="INT64"),
        "batch over max_batch_size": v2(str([1.0] * 36), shape="[9, 4]"),
        "unknown input name": v2("[24, 80.5, 2, 12]", name="features"),
        "nested 1,000 deep": v2("[" * 1000 + "]" * 1000),
        "no inputs": b"{}",
        "empty body": b"",
        "not JSON": b"tenure=24",
        "invalid UTF-8": b'{"inputs": [\xff\xfe]}',
    }


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(width: int, height: int, extra_chunks: list[tuple[bytes, bytes]] = (),
              pixel_data: bytes | None = None) -> bytes:
    """A black 8-bit grayscale PNG of any size, built row by row (a 12000x12000 one is ~140 KB).

    `pixel_data` replaces the compressed pixels, e.g. to make a header that lies about the size.

    Introduced in 02_handlers.
    """
    if pixel_data is None:
        compressor = zlib.compressobj(9)
        row = b"\x00" * (width + 1)   # filter byte + one byte per pixel
        pixel_data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(_chunk(k, p) for k, p in extra_chunks)
            + _chunk(b"IDAT", pixel_data) + _chunk(b"IEND", b""))


def digit_hostile_inputs() -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments for requests.post: bad bodies for the digit model (image bytes).

    Introduced in 02_handlers.
    """
    bomb = zlib.compress(b"A" * 50_000_000, 9)   # 50 MB of text in ~50 KB
    small = png_bytes(8, 8)
    return {
        "not an image": {"data": b"GIF89a but not really"},
        "truncated PNG": {"data": small[: len(small) // 2]},
        "12000x12000 PNG (144 MP)": {"data": png_bytes(12_000, 12_000)},
        "header claims 40000x40000": {"data": png_bytes(40_000, 40_000, pixel_data=zlib.compress(b"\x00" * 9))},
        "zTXt bomb (50 MB of text)": {"data": png_bytes(8, 8, [(b"zTXt", b"Comment\x00\x00" + bomb)])},
        "iCCP bomb (50 MB profile)": {"data": png_bytes(8, 8, [(b"iCCP", b"icc\x00\x00" + bomb)])},
        "base64 of garbage": {"json": {"data": "%%% not base64 %%%"}},
        "JSON number": {"json": {"data": 7}},
    }


def worker_pids(server: Any, model: str) -> list[int]:
    """PIDs of the READY workers of `model` (TorchServe's management API).

    Introduced in 02_handlers.
    """
    described = server.management_get(f"models/{model}").json()[0]
    return sorted(w["pid"] for w in described["workers"] if w["status"] == "READY")


def error_message(response: requests.Response) -> str:
    """The message of a server's JSON error answer (TorchServe's "message", Triton's "error"), else the body as text.

    Internal helper: no lesson calls it.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("message", body.get("error", response.text))) if isinstance(body, dict) else response.text


def probe(server: Any, model: str, hostile: dict[str, dict[str, Any]], good: dict[str, Any]) -> list[dict]:
    """Send each hostile input together with a good request; one row per input (status, message, neighbour).

    Introduced in 02_handlers.
    """
    url = f"{server.inference_url}/predictions/{model}"

    def post(body: dict[str, Any]) -> requests.Response:
        headers = {**server.headers("inference"), **body.get("headers", {})}
        return requests.post(url, timeout=60, **{k: v for k, v in body.items() if k != "headers"}, headers=headers)

    rows = []
    for name, body in hostile.items():
        before = worker_pids(server, model)
        with ThreadPoolExecutor(2) as pool:
            bad, neighbour = pool.map(post, [body, good])
        rows.append({"input": name, "status": bad.status_code, "message": error_message(bad),
                     "neighbour": neighbour.status_code, "same worker": worker_pids(server, model) == before})
    return rows
