"""Lesson 21's tuning helpers: candidate configs as written, the frontier and the choice under an SLO, and Model
Analyzer's config and results as the course writes and reads them (its live run is optional: skipped where
`make model-analyzer` has not installed it)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "model_analyzer"


def measurements(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["setup", "concurrency", "throughput", "p99_ms"])


def test_a_candidate_is_the_model_folder_with_its_three_knobs(tmp_path):
    from course_utils.triton_config import io_tensor, model_config, read_config, validate_model, write_config
    from course_utils.tuning import Candidate, write_candidate

    source = tmp_path / "repo" / "m"
    write_config(source, model_config("m", backend="python", max_batch_size=8, dynamic_batching={},
                                      inputs=[io_tensor("x", "TYPE_FP32", [4])], outputs=[io_tensor("y", "TYPE_FP32", [4])]))
    (source / "1").mkdir()
    (source / "1" / "model.py").write_text("# the model\n")
    for candidate, delay_field in [(Candidate(2, 16, 500), True), (Candidate(1, 1), False)]:
        name = write_candidate(source, tmp_path / "repo", candidate)
        config = read_config(tmp_path / "repo" / name)
        assert name == candidate.name == config.name
        assert (config.max_batch_size, config.instance_group[0].count) == (candidate.max_batch_size, candidate.instances)
        assert config.HasField("dynamic_batching") is delay_field
        assert config.dynamic_batching.max_queue_delay_microseconds == candidate.delay_us
        assert (tmp_path / "repo" / name / "1" / "model.py").read_text() == "# the model\n"
        assert validate_model(tmp_path / "repo" / name) == []
    assert read_config(source).name == "m"   # the source is left as it was


def test_the_frontier_keeps_what_nothing_beats_and_the_choice_is_its_best_point_within_the_slo():
    from course_utils.tuning import best_under_slo, latency_frontier

    table = measurements(("a", 1, 800, 1.5), ("a", 8, 900, 11.0), ("b", 1, 850, 1.7), ("b", 8, 2000, 6.5),
                         ("b", 32, 3400, 19.0), ("c", 32, 3500, 25.0), ("c", 8, 1900, 8.0))
    assert list(latency_frontier(table)["throughput"]) == [800, 850, 2000, 3400, 3500]
    chosen = best_under_slo(table, 20)
    assert (chosen["setup"], chosen["concurrency"]) == ("b", 32)
    assert best_under_slo(table, 1.0) is None


def test_model_analyzer_config_is_a_brute_search_under_the_slo_on_loopback(tmp_path):
    from course_utils.model_analyzer import model_analyzer_config

    text = model_analyzer_config(tmp_path / "served", "digits", tmp_path, [1, 2], [1, 16], [0, 500], [32], 20,
                                 "course_0123abcd_")
    config = yaml.safe_load(text)
    assert config["triton_launch_mode"] == "local" and config["run_config_search_disable"] is True
    assert config["constraints"] == {"perf_latency_p99": {"max": 20}}
    assert all(config[key].startswith(("127.0.0.1:", "http://127.0.0.1:"))
               for key in ("triton_http_endpoint", "triton_grpc_endpoint", "triton_metrics_url"))
    parameters = config["profile_models"]["digits"]["model_config_parameters"]
    assert parameters["instance_group"][0]["count"] == [1, 2] and parameters["max_batch_size"] == [1, 16]
    wrapper = Path(config["triton_server_path"]).read_text()
    assert "--http-address=127.0.0.1" in wrapper and "shm-region-prefix-name=course_0123abcd_" in wrapper
    assert oct(Path(config["triton_server_path"]).stat().st_mode & 0o777) == "0o700"


def test_model_analyzer_results_read_into_the_sweeps_columns():
    from course_utils.model_analyzer import read_model_analyzer

    table = read_model_analyzer(FIXTURES)
    assert list(table.columns) == ["variant", "instances", "max_batch_size", "delay_us", "concurrency", "throughput",
                                   "p99_ms", "meets SLO"]
    top = table.iloc[0]
    assert (top["variant"], top["instances"], top["max_batch_size"], top["meets SLO"]) == ("digits_config_3", 2, 16, True)
    assert not table.query("max_batch_size == 1")["meets SLO"].any()


@pytest.mark.slow
def test_model_analyzer_runs_against_the_embedded_server(tmp_path):
    from course_utils.model_analyzer import ModelAnalyzerError, model_analyzer_installed, run_model_analyzer
    from course_utils.models import load_digit_cnn
    from course_utils.pipelines import write_digit_classifier

    if not model_analyzer_installed():
        pytest.skip("Model Analyzer is optional: `make model-analyzer` installs it")
    write_digit_classifier(tmp_path / "repo", load_digit_cnn().model, name="digits")
    table = run_model_analyzer(tmp_path / "repo", "digits", tmp_path / "ma", instances=[1], max_batch_sizes=[1, 8],
                               delays_us=[0], concurrencies=[4], slo_ms=50)
    assert set(table["variant"]) == {"digits_config_default", "digits_config_0", "digits_config_1"}
    assert (table["throughput"] > 0).all()
    assert "Started HTTPService at 127.0.0.1" in (tmp_path / "ma" / "tritonserver.log").read_text()
    leaves_nothing(tmp_path, tmp_path / "ma")

    # stopped part-way (a timeout; an interrupt takes the same path): its server and perf_analyzer stop too
    with pytest.raises(ModelAnalyzerError, match="ran over 25 s"):
        run_model_analyzer(tmp_path / "repo", "digits", tmp_path / "stopped", instances=[1, 2], max_batch_sizes=[1, 8],
                           delays_us=[0], concurrencies=[4], slo_ms=50, timeout_s=25)
    leaves_nothing(tmp_path, tmp_path / "stopped")


def leaves_nothing(tmp_path: Path, out_dir: Path) -> None:
    prefix = re.search(r"shm-region-prefix-name=(course_[0-9a-f]{8}_)", (out_dir / "tritonserver").read_text())
    assert not list(Path("/dev/shm").glob(f"{prefix.group(1)}*"))   # its stubs' regions are gone
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
