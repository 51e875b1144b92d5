"""The numbers LLM users compare, computed from perf_analyzer's profile export the way genai-perf computes them.

perf_analyzer streams requests to a decoupled model and records, per request, when it was sent and
when each response arrived (`--profile-export-file`); genai-perf runs perf_analyzer and computes its
LLM metrics from that record. The definitions (NVIDIA's genai-perf / AIPerf metrics reference):

* time to first token (TTFT): from sending the request to its first response that holds text;
* end-to-end latency (e2e): from sending the request to its last response;
* inter-token latency (ITL) of a request: (e2e - TTFT) / (output tokens - 1), the mean gap between
  tokens after the first (none for a one-token answer, which therefore meets any ITL bound);
* output tokens: the tokens of the request's whole streamed text, counted with the model's tokenizer;
* output token throughput and request throughput: over the measured span (the first send to the
  last response): tokens/s and requests/s;
* goodput: requests/s that met the service-level objective (SLO), here a TTFT and an ITL bound.
A request that streamed no text (its only response was an error) counts as a request and an error,
and never meets the SLO. The profile export holds every measurement window perf_analyzer ran, so a
level's numbers cover more requests than one window's request count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SLO:
    """A service-level objective per request: the first token within `ttft_ms`, then tokens `itl_ms` apart on average.

    Introduced in 15_continuous_batching.
    """

    ttft_ms: float
    itl_ms: float

    def met(self, requests: pd.DataFrame) -> pd.Series:
        """Which requests (rows of request_metrics) met it: no error, TTFT and ITL within bounds (a one-token answer has no ITL)."""
        return ~requests["error"] & (requests["ttft_ms"] <= self.ttft_ms) & (requests["itl_ms"].fillna(0) <= self.itl_ms)


def response_texts(outputs: Sequence[dict | None]) -> list[str]:
    """The text each recorded response of one request carries: Triton's `text_output`, or OpenAI's answer.

    OpenAI answers are server-sent events (`data: {...}` lines, a blank line after each event; an event
    split across two responses counts when it is complete) or, not streamed, one JSON body.
    Internal helper: no lesson calls it.
    """
    texts, pending = [], ""
    for output in outputs:
        output = output or {}
        if "text_output" in output:
            texts.append(output["text_output"] or "")
            continue
        pending += output.get("response") or ""   # perf_analyzer --service-kind openai
        if pending.lstrip().startswith("{"):       # a whole JSON answer (not streamed)
            texts.append(_choices_text(pending))
            pending = ""
            continue
        *events, pending = pending.split("\n\n")
        texts.append("".join(_choices_text(event[len("data:"):]) for event in events
                             if event.startswith("data:") and event[len("data:"):].strip() != "[DONE]"))
    return texts


def _choices_text(event: str) -> str:
    try:
        return "".join(choice.get("text", "") for choice in json.loads(event).get("choices", []))
    except (ValueError, AttributeError):   # not JSON, or not an object: no text
        return ""


def request_metrics(profile: Path, tokenizer: "Tokenizer") -> pd.DataFrame:
    """One row per request of a perf_analyzer profile export: ttft_ms, e2e_ms, itl_ms, output_tokens, error, sent_s, done_s.

    Internal helper: no lesson calls it.
    """
    experiment = json.loads(Path(profile).read_text())["experiments"][0]
    rows = []
    for request in experiment["requests"]:
        times = request["response_timestamps"]
        texts = response_texts(request.get("response_outputs", []))
        with_text = [t for t, text in zip(times, texts) if text]
        tokens = len(tokenizer.encode("".join(texts)).ids)
        ttft = (with_text[0] - request["timestamp"]) / 1e6 if with_text else np.nan
        e2e = (times[-1] - request["timestamp"]) / 1e6 if times else np.nan
        rows.append({"ttft_ms": ttft, "e2e_ms": e2e, "output_tokens": tokens,
                     "itl_ms": (e2e - ttft) / (tokens - 1) if tokens > 1 else np.nan, "error": not with_text,
                     "sent_s": request["timestamp"] / 1e9, "done_s": times[-1] / 1e9 if times else np.nan})
    return pd.DataFrame(rows)


def summary(requests: pd.DataFrame, slo: SLO) -> dict[str, float]:
    """The percentiles and rates of one measurement (one concurrency level of one deployment).

    Internal helper: no lesson calls it.
    """
    span = requests["done_s"].max() - requests["sent_s"].min()
    return {"requests": len(requests), "errors": int(requests["error"].sum()),
            "TTFT p50 ms": requests["ttft_ms"].median(), "TTFT p95 ms": requests["ttft_ms"].quantile(0.95),
            "ITL p50 ms": requests["itl_ms"].median(), "ITL p95 ms": requests["itl_ms"].quantile(0.95),
            "e2e p50 ms": requests["e2e_ms"].median(),
            "output tokens/s": requests["output_tokens"].sum() / span, "requests/s": len(requests) / span,
            "goodput req/s": slo.met(requests).sum() / span}


def llm_table(measured: pd.DataFrame, tokenizer: "Tokenizer", slo: SLO) -> pd.DataFrame:
    """The LLM metrics of every row of run_perf_analyzer(..., profile=True) tables (columns setup, concurrency, profile).

    Introduced in 15_continuous_batching.
    """
    rows = [{"setup": row.setup, "concurrency": row.concurrency, "stable": row.stable,
             **summary(request_metrics(Path(row.profile), tokenizer), slo)} for row in measured.itertuples()]
    return pd.DataFrame(rows)


def workload(path: Path, prompts: Sequence[str], lengths: Sequence[int], count: int, seed: int = 0,
             openai_model: str | None = None) -> Path:
    """Write perf_analyzer's --input-data JSON: `count` requests, each a prompt and a max_tokens drawn (seeded).

    Every request sets ignore_eos, so that it asks for exactly its max_tokens (as LLM benchmarks do).
    With `openai_model`, each request is the JSON body of a streamed OpenAI completion for that model
    (for `--service-kind openai`, as genai-perf writes it); else Triton's inputs.
    Introduced in 15_continuous_batching.
    """
    rng = np.random.default_rng(seed)
    drawn = [(str(rng.choice(prompts)), int(rng.choice(lengths))) for _ in range(count)]
    if openai_model:
        data = [{"payload": [{"model": openai_model, "prompt": prompt, "max_tokens": length, "temperature": 0,
                              "ignore_eos": True, "stream": True}]} for prompt, length in drawn]
    else:
        data = [{"text_input": {"content": [prompt], "shape": [1]}, "max_tokens": [length], "ignore_eos": [True]}
                for prompt, length in drawn]
    Path(path).write_text(json.dumps({"data": data}, indent=1))
    return Path(path)
