"""ONNX export, parity checking, timing and the TensorRT guard."""

import pytest
import torch

from course_utils.models import load_churn_model, train_churn_model
from course_utils.onnx_tools import ParityError, export_onnx, onnx_session, parity_table
from course_utils.tensorrt_engine import tensorrt_status
from course_utils.timing import interleaved_ratio, time_function


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    trained = load_churn_model()
    path = export_onnx(trained.model, torch.from_numpy(trained.data.x_test[:2]),
                       tmp_path_factory.mktemp("onnx") / "churn.onnx")
    return trained, path


def test_export_is_one_file_with_a_dynamic_batch_and_passes_parity(churn):
    trained, path = churn
    assert sorted(p.name for p in path.parent.iterdir()) == ["churn.onnx"]
    table = parity_table(trained.model, path, trained.data.x_test, batch_sizes=(1, 5, 100))
    assert list(table.batch) == [1, 5, 100] and table.within_tolerance.all()


def test_parity_fails_loudly_beyond_the_tolerance(churn):
    trained, path = churn
    other = train_churn_model(seed=3).model  # a different model: large differences
    with pytest.raises(ParityError, match=r"max \|PyTorch - ONNX Runtime\| = .* > tolerance 1e-04"):
        parity_table(other, path, trained.data.x_test, batch_sizes=(4,))


def test_session_rejects_an_unknown_optimization_level(churn):
    with pytest.raises(ValueError, match="optimization must be one of"):
        onnx_session(churn[1], optimization="max")


def test_timing_reports_median_and_p90_and_ratios():
    timing = time_function("sleep-free", lambda: sum(range(100)), warmup=2, repeats=30)
    assert len(timing.samples_ms) == 30 and timing.p90_ms >= timing.median_ms > 0
    ratio = interleaved_ratio(lambda: sum(range(20000)), lambda: sum(range(200)), rounds=3, repeats=10)
    assert ratio > 1


def test_tensorrt_guard_says_why_it_cannot_run():
    available, reason = tensorrt_status()
    assert isinstance(available, bool) and reason
    if not available:
        assert "not installed" in reason or "no CUDA GPU" in reason
