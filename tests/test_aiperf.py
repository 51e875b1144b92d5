"""AIPerf, the optional second LLM benchmark (lesson 16), against both servers' streaming endpoints.

The command and the dataset are checked everywhere; the live runs need `make aiperf` (AIPerf in
.venv-aiperf/, from tools/aiperf.lock) and are skipped without it, saying so. Live, AIPerf measures
lesson 16's OpenAI endpoint on TorchServe (bearer key, continuous batching) and lesson 15's
generate_stream on Triton (its template endpoint): every request succeeds, each streams the tokens it
asked for, and the key stays out of AIPerf's files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from course_utils.aiperf import TRITON_TEMPLATE, aiperf_command, aiperf_dataset, aiperf_installed
from course_utils.llm_metrics import SLO, workload

PROMPTS = ["Beautiful is", "Errors should", "In the"]
needs_aiperf = pytest.mark.skipif(not aiperf_installed(), reason="AIPerf is not installed: `make aiperf` installs it")


@pytest.mark.parametrize("openai_model", ["zen", None])
def test_the_dataset_holds_the_workloads_requests(tmp_path, openai_model):
    requests_file = workload(tmp_path / "w.json", PROMPTS, lengths=[8, 16], count=6, openai_model=openai_model)
    lines = [json.loads(line) for line in aiperf_dataset(requests_file, tmp_path / "d.jsonl").read_text().splitlines()]
    data = json.loads(requests_file.read_text())["data"]
    assert len(lines) == len(data) == 6
    for line, entry in zip(lines, data):
        sent = entry["payload"][0] if openai_model else {"prompt": entry["text_input"]["content"][0],
                                                           "max_tokens": entry["max_tokens"][0]}
        assert line == {"text": sent["prompt"], "output_length": sent["max_tokens"]}


def test_the_triton_command_reads_its_template_from_a_file(tmp_path):
    dataset = tmp_path / "d.jsonl"
    command = aiperf_command("http://127.0.0.1:1", "zen", "/v2/models/zen/generate_stream", tmp_path, dataset, 8, 48,
                             tmp_path / "a", SLO(200, 50))
    template = Path(command[command.index("--extra-inputs") + 1].removeprefix("payload_template:"))
    assert template.read_text() == TRITON_TEMPLATE   # AIPerf splits an inline template at its commas
    assert "http://127.0.0.1:1/v2/models/zen/generate_stream" in command
    assert "time_to_first_token:200 inter_token_latency:50" in command


def _check_run(table, artifacts: Path, requests_file: Path, secret: str = "") -> None:
    assert (table["errors"] == 0).all() and (table["requests"] == 16).all()
    assert (table["output tokens/s"] > 0).all() and table["TTFT p50 ms"].notna().all()
    asked = sum(json.loads(line)["output_length"] for line in requests_file.read_text().splitlines())
    for level in table["concurrency"]:
        export = json.loads(next(artifacts.glob(f"*_c{level}/profile_export_aiperf.json")).read_text())
        # AIPerf counts the streamed text's tokens anew: a BPE merge at a piece boundary may shift one
        assert abs(export["total_osl"]["avg"] - asked) <= 16
    if secret:
        leaked = [path for path in artifacts.rglob("*") if path.is_file() and secret in path.read_text(errors="ignore")]
        assert not leaked, f"the bearer key is in {leaked}"


@pytest.mark.slow
@needs_aiperf
def test_aiperf_measures_torchserves_openai_endpoint(tmp_path):
    from course_utils.aiperf import run_aiperf
    from course_utils.language_model import load_language_model
    from course_utils.servers.torchserve import TorchServe
    from course_utils.streaming import archive_zen

    archive_zen(tmp_path / "store", tmp_path / "files", "zen", handler="zen_openai_handler",
                settings={"continuousBatching": True, "batchSize": 8, "maxBatchDelay": 1})
    requests_file = workload(tmp_path / "w.json", PROMPTS, lengths=[8, 16], count=16, openai_model="zen")
    with TorchServe(tmp_path / "store", tmp_path / "server", models=["zen.mar"]) as server:
        key = server.key("inference")
        table = run_aiperf(server.inference_url, "zen", "/predictions/zen/1.0/v1/completions",
                           load_language_model().tokenizer, requests_file, tmp_path / "aiperf", [1, 4], 16,
                           SLO(200, 50), headers=[f"Authorization:Bearer {key}"])
    _check_run(table, tmp_path / "aiperf", tmp_path / "aiperf" / "w.jsonl", secret=key)


@pytest.mark.slow
@needs_aiperf
def test_aiperf_measures_tritons_generate_stream(tmp_path):
    from course_utils.aiperf import run_aiperf
    from course_utils.language_model import load_language_model
    from course_utils.servers.triton import TritonServer
    from course_utils.streaming import write_zen_model

    write_zen_model(tmp_path / "repo", "zen", parameters={"slots": 8}, batching="continuous")
    requests_file = workload(tmp_path / "w.json", PROMPTS, lengths=[8, 16], count=16)
    with TritonServer(tmp_path / "repo", tmp_path / "server", models=["zen"]) as triton:
        table = run_aiperf(f"http://{triton.http_url}", "zen", "/v2/models/zen/generate_stream",
                           load_language_model().tokenizer, requests_file, tmp_path / "aiperf", [1, 4], 16, SLO(200, 50))
    _check_run(table, tmp_path / "aiperf", tmp_path / "aiperf" / "w.jsonl")
