"""NVIDIA AIPerf, an optional second benchmark: run it against a course server and read its numbers.

AIPerf (genai-perf's successor) is an LLM benchmark written in Python. It cannot share the course's
environment (it pins pandas 2.3, pillow and psutil to other versions than the course's lock), so
`make aiperf` installs it, from its own lock `tools/aiperf.lock`, into `.venv-aiperf/` at the repository
root. Lessons run it only where that environment exists. Its metric definitions are the ones
`llm_metrics` implements for perf_analyzer's record, so the two tables can be read side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from course_utils.paths import REPO_ROOT

if TYPE_CHECKING:
    import pandas as pd
    from tokenizers import Tokenizer

    from course_utils.llm_metrics import SLO

AIPERF = REPO_ROOT / ".venv-aiperf" / "bin" / "aiperf"

# llm_metrics.summary's column -> (the metric in AIPerf's JSON export, its statistic)
COLUMNS = {"TTFT p50 ms": ("time_to_first_token", "p50"), "TTFT p95 ms": ("time_to_first_token", "p95"),
           "ITL p50 ms": ("inter_token_latency", "p50"), "ITL p95 ms": ("inter_token_latency", "p95"),
           "e2e p50 ms": ("request_latency", "p50"), "output tokens/s": ("output_token_throughput", "avg"),
           "requests/s": ("request_throughput", "avg"), "goodput req/s": ("goodput", "avg")}


class AIPerfError(RuntimeError):
    """AIPerf exited with an error, or measured requests that failed."""


def aiperf_installed() -> bool:
    """Whether `make aiperf` has installed AIPerf in its own environment.

    Introduced in 16_openai_api.
    """
    return AIPERF.exists()


def tokenizer_folder(tokenizer: "Tokenizer", folder: Path) -> Path:
    """Write the course's tokenizer as a local Hugging Face tokenizer folder, for AIPerf's `--tokenizer`.

    AIPerf counts tokens with a `transformers` tokenizer; given this folder it loads the course's own
    BPE from disk (nothing is downloaded from the Hugging Face hub).
    Internal helper: no lesson calls it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder


def aiperf_dataset(workload: Path, path: Path) -> Path:
    """Turn a perf_analyzer workload (llm_metrics.workload) into AIPerf's single-turn JSONL, request for request.

    Each line holds the prompt (`text`) and the tokens to generate (`output_length`), so AIPerf sends
    the same requests as perf_analyzer did.
    Internal helper: no lesson calls it.
    """
    lines = []
    for entry in json.loads(Path(workload).read_text())["data"]:
        if "payload" in entry:    # an OpenAI body
            body = entry["payload"][0]
            prompt, length = body["prompt"], body["max_tokens"]
        else:                     # Triton's inputs
            prompt, length = entry["text_input"]["content"][0], entry["max_tokens"][0]
        lines.append(json.dumps({"text": prompt, "output_length": length}))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


# Triton's generate_stream takes the model's inputs as JSON fields; AIPerf fills this template per request.
TRITON_TEMPLATE = ('{"text_input": {{ text|tojson }}, "max_tokens": {{ max_tokens }}, "ignore_eos": true, '
                   '"temperature": 0}')


def aiperf_command(url: str, model: str, endpoint: str, tokenizer: Path, dataset: Path, concurrency: int,
                   request_count: int, artifacts: Path, slo: "SLO", headers: Sequence[str] = ()) -> list[str]:
    """The `aiperf profile` command for one concurrency level, streamed, with goodput under `slo`.

    `endpoint` is an OpenAI completions path (`.../v1/completions`) or Triton's `/v2/models/<m>/generate_stream`
    (AIPerf's template endpoint, reading `text_output`; the template goes in a file next to `dataset`, as
    AIPerf splits an inline one at its commas). Every request asks for exactly its `output_length` tokens
    (`ignore_eos`), decoded greedily.
    Internal helper: no lesson calls it.
    """
    if endpoint.endswith("/generate_stream"):
        template = Path(dataset).with_name("triton_template.json")
        template.write_text(TRITON_TEMPLATE)
        api = ["--url", url + endpoint, "--endpoint-type", "template",
               "--extra-inputs", f"payload_template:{template}", "--extra-inputs", "response_field:text_output"]
    else:
        api = ["--url", url, "--endpoint-type", "completions", "--endpoint", endpoint,
               "--extra-inputs", "ignore_eos:true", "--extra-inputs", "temperature:0"]
    command = [str(AIPERF), "profile", "--model", model, *api, "--streaming", "--tokenizer", str(tokenizer),
               "--input-file", str(dataset), "--custom-dataset-type", "single_turn",
               "--concurrency", str(concurrency), "--request-count", str(request_count),
               "--goodput", f"time_to_first_token:{slo.ttft_ms} inter_token_latency:{slo.itl_ms}",
               "--random-seed", "0", "--artifact-dir", str(artifacts), "--ui-type", "none"]
    for header in headers:
        command += ["--header", header]
    return command


def read_aiperf(artifacts: Path) -> dict[str, float]:
    """AIPerf's summary of one run (its profile_export_aiperf.json), under llm_metrics.summary's column names.

    Internal helper: no lesson calls it.
    """
    export = json.loads((Path(artifacts) / "profile_export_aiperf.json").read_text())
    row = {"requests": export.get("request_count", {}).get("avg", 0),
           "errors": sum(error.get("count", 1) for error in export.get("error_summary") or [])}
    for column, (metric, statistic) in COLUMNS.items():
        row[column] = export.get(metric, {}).get(statistic, float("nan"))
    return row


def run_aiperf(url: str, model: str, endpoint: str, tokenizer: "Tokenizer", workload: Path, out_dir: Path,
               concurrencies: Sequence[int], request_count: int, slo: "SLO", headers: Sequence[str] = (),
               label: str = "") -> "pd.DataFrame":
    """Run AIPerf once per concurrency level on the requests of `workload`; return one table like llm_table's.

    `headers` are "Name:value" pairs (an Authorization header among them: AIPerf keeps it out of its
    files, though it is on the command line while AIPerf runs). Raises AIPerfError with AIPerf's last
    output lines when it fails or a request failed.
    Introduced in 16_openai_api.
    """
    import pandas as pd

    from course_utils.progress import progress

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = tokenizer_folder(tokenizer, out_dir / "tokenizer")
    dataset = aiperf_dataset(workload, out_dir / f"{Path(workload).stem}.jsonl")
    rows = []
    for concurrency in progress(concurrencies, desc=f"AIPerf {model}"):
        artifacts = out_dir / f"{label or model}_c{concurrency}".replace(" ", "_")
        shutil.rmtree(artifacts, ignore_errors=True)   # an earlier run's export must not pass for this one
        command = aiperf_command(url, model, endpoint, tokenizer_dir, dataset, concurrency, request_count,
                                 artifacts, slo, headers)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as error:
            raise AIPerfError(f"aiperf ran over 600 s at concurrency {concurrency}; see "
                              f"{artifacts / 'logs' / 'aiperf.log'}") from error
        if result.returncode != 0 or not (artifacts / "profile_export_aiperf.json").exists():
            raise AIPerfError(f"aiperf exited with {result.returncode} at concurrency {concurrency}:\n"
                              + "\n".join((result.stdout + result.stderr).splitlines()[-15:]))
        row = read_aiperf(artifacts)
        if row["errors"]:
            raise AIPerfError(f"{row['errors']:.0f} of AIPerf's requests failed at concurrency {concurrency}; "
                              f"see {artifacts / 'logs' / 'aiperf.log'}")
        rows.append({"setup": label or model, "concurrency": concurrency, **row})
    return pd.DataFrame(rows)
