"""The course handlers, run in-process exactly as a worker loads them."""

import base64

import pytest

from course_utils.archiver import handler_file, run_handler_locally, save_torchscript, write_index_to_name
from course_utils.data import DIGIT_CLASSES, write_digit_pngs
from course_utils.models import load_digit_cnn


def test_churn_handler_answers_each_request_of_a_batch(churn_files):
    bodies = [[24, 80.5, 2, 12], {"data": [24, 80.5, 2, 12]}, b"not json", {"data": [1, 2]},
              {"data": [1, "x", 2, 3]}, b"", {"data": [1, float("inf"), 2, 3]}, {"tenure_months": 3}, True]
    answers = run_handler_locally(churn_files["handler"], churn_files["model"], bodies,
                                  [churn_files["base"], churn_files["labels"]])
    assert [a.status for a in answers] == [200, 200, 400, 400, 400, 400, 400, 400, 400]
    assert answers[0].body == answers[1].body and answers[0].body["class_name"] in {"stays", "churns"}
    assert "expected 4 numbers" in answers[3].message
    assert "monthly_charges" in answers[4].message
    assert "missing feature" in answers[7].message


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return {"model": save_torchscript(load_digit_cnn().model, folder / "digits.pt"),
            "labels": write_index_to_name(DIGIT_CLASSES, folder), "pngs": write_digit_pngs(folder / "png", 3)}


def test_digit_handler_reads_bytes_and_base64_and_rejects_garbage(digit_files):
    (png, label), (png2, label2), _ = digit_files["pngs"]
    bodies = [png.read_bytes(), {"data": base64.b64encode(png2.read_bytes()).decode()}, b"\x89PNG broken", "@@@"]
    answers = run_handler_locally(handler_file("digit_handler"), digit_files["model"], bodies,
                                  [handler_file("batch_safe"), digit_files["labels"]])
    assert [a.status for a in answers] == [200, 200, 400, 400]
    assert answers[0].body["predictions"][0]["class_id"] == label
    assert answers[1].body["predictions"][0]["class_id"] == label2
    assert len(answers[0].body["predictions"]) == 3
    assert "could not decode" in answers[2].message and "base64" in answers[3].message


def test_a_handler_file_with_two_classes_is_refused_with_the_rule(churn_files, tmp_path):
    two = tmp_path / "two_classes.py"
    two.write_text("from ts.torch_handler.base_handler import BaseHandler\n"
                   "class A(BaseHandler):\n    pass\nclass B(BaseHandler):\n    pass\n")
    with pytest.raises(ValueError, match="exactly one class"):
        run_handler_locally(two, churn_files["model"], [[1, 2, 3, 4]])


def test_tensor_handler_takes_raw_float32_and_rejects_each_bad_request_alone(tmp_path):
    import numpy as np
    import torch

    from course_utils.models import DigitCNN

    torch.manual_seed(0)
    model = save_torchscript(DigitCNN().eval(), tmp_path / "digit.pt", example=torch.rand(1, 1, 8, 8))
    good = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    answers = run_handler_locally(handler_file("tensor_handler"), model,
                                  [good.tobytes(), good.tobytes()[:-4], nan.tobytes(), good.tobytes()],
                                  extra_files=[handler_file("batch_safe")], content_type="application/octet-stream",
                                  model_yaml_config={"handler": {"shape": [1, 8, 8]}})
    assert [a.status for a in answers] == [200, 400, 400, 200]
    assert "expected 256 bytes (float32 of shape [1, 8, 8]), got 252" in answers[1].message
    assert "NaN" in answers[2].message
    assert answers[0].body == answers[3].body and set(answers[0].body) == {"prediction"}
