"""The config builder round-trips through Triton's protobuf, and the validator names each mistake."""

from pathlib import Path

import pytest
import torch

from course_utils.triton_config import (ConfigError, config_text, io_tensor, model_config, parse_config,
                                        validate_config, validate_model, write_config)


def churn_config() -> str:
    return ('name: "churn"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
            'input [ { name: "input", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
            'output [ { name: "output", data_type: TYPE_FP32, dims: [ 2 ] } ]\n'
            'instance_group [ { count: 1, kind: KIND_CPU } ]\n'
            'dynamic_batching { preferred_batch_size: [ 4, 8 ] }\n')


@pytest.fixture(scope="module")
def churn_dir(tmp_path_factory) -> Path:
    from course_utils.models import load_churn_model
    from course_utils.onnx_tools import export_onnx

    folder = tmp_path_factory.mktemp("repo") / "churn"
    trained = load_churn_model()
    export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]), folder / "1" / "model.onnx")
    return folder


def with_config(folder: Path, text: str) -> list[str]:
    (folder / "config.pbtxt").write_text(text)
    return [f"{p.field}: {p.message}" for p in validate_model(folder, gpu_available=False)]


def test_built_config_round_trips_and_prints_lists():
    config = model_config("m", platform="onnxruntime_onnx", max_batch_size=16,
                          inputs=[io_tensor("x", "TYPE_FP32", [3, 8, 8])], outputs=[io_tensor("y", "TYPE_FP32", [10])],
                          dynamic_batching={"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100},
                          latest_versions=2)
    text = config_text(config)
    assert "dims: [ 3, 8, 8 ]" in text and "preferred_batch_size: [ 4, 8 ]" in text
    assert parse_config(text) == config


def test_parse_error_names_the_line_and_suggests_the_field():
    with pytest.raises(ConfigError, match=r"3:1 .*max_batch_sise.*did you mean 'max_batch_size'"):
        parse_config('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_sise: 4\n')
    with pytest.raises(ConfigError, match="did you mean TYPE_FP32"):
        parse_config('input [ { name: "x", data_type: TYPE_FP23, dims: [ 1 ] } ]')


def test_a_correct_config_has_no_problems(churn_dir):
    assert with_config(churn_dir, churn_config()) == []


@pytest.mark.parametrize("old, new, field", [
    ("dims: [ 4 ]", "dims: [ -1, 4 ]", "input 'input' dims"),
    ('name: "output"', 'name: "probs"', "output 'probs' name"),
    ("data_type: TYPE_FP32, dims: [ 4 ]", "data_type: TYPE_FP64, dims: [ 4 ]", "input 'input' data_type"),
    ("[ 4, 8 ]", "[ 4, 16 ]", "dynamic_batching.preferred_batch_size"),
    ("dims: [ 2 ]", "dims: [ 3 ]", "output 'output' dims"),
    ('name: "churn"', 'name: "other"', "name"),
    ("KIND_CPU", "KIND_GPU", "instance_group.kind"),
    ('platform: "onnxruntime_onnx"', 'platform: "onnxruntime_onx"', "platform/backend"),
])
def test_each_mistake_is_named_by_its_field(churn_dir, old, new, field):
    problems = with_config(churn_dir, churn_config().replace(old, new))
    assert any(p.startswith(field + ":") for p in problems), problems


def test_missing_model_file_and_versions(tmp_path):
    folder = tmp_path / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx.bak").write_text("x")
    (folder / "config.pbtxt").write_text(churn_config().replace('"churn"', '"m"'))
    assert any("has no model.onnx" in p for p in with_config(folder, (folder / "config.pbtxt").read_text()))


def test_ensemble_maps_are_checked_against_step_configs(tmp_path):
    write_config(tmp_path / "a", model_config("a", backend="python", max_batch_size=4,
                                              inputs=[io_tensor("IN", "TYPE_FP32", [1])],
                                              outputs=[io_tensor("OUT", "TYPE_FP32", [1])]))
    good = ('name: "e"\nplatform: "ensemble"\nmax_batch_size: 4\n'
            'input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
            'output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
            'ensemble_scheduling { step [ { model_name: "a", model_version: -1, '
            'input_map { key: "IN", value: "x" }, output_map { key: "OUT", value: "y" } } ] }\n')
    assert validate_config(parse_config(good), repository=tmp_path) == []
    swapped = good.replace('key: "IN", value: "x"', 'key: "x", value: "IN"')
    fields = [p.field for p in validate_config(parse_config(swapped), repository=tmp_path)]
    assert set(fields) == {"ensemble_scheduling.step[0] (a).input_map"}
    unmapped = good.replace('value: "y"', 'value: "z"')
    assert [p.field for p in validate_config(parse_config(unmapped), repository=tmp_path)] == ["output 'y'"]
