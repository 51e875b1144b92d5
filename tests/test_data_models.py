import numpy as np
import pytest
import torch

from course_utils.data import load_digits_split, make_churn_data, write_digit_pngs
from course_utils.models import train_churn_model, train_digit_cnn


def test_churn_data_is_deterministic_and_shaped():
    a, b = make_churn_data(seed=0), make_churn_data(seed=0)
    assert a.x_train.shape == (3000, 4) and a.x_test.shape == (1000, 4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert 0.2 < a.y_train.mean() < 0.45


def test_churn_data_rejects_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        make_churn_data(test_fraction=1.5)


def test_models_train_to_useful_accuracy_reproducibly():
    first, second = train_churn_model(), train_churn_model()
    assert first.test_accuracy == second.test_accuracy
    assert torch.equal(first.model.net[0].weight, second.model.net[0].weight)
    assert first.test_accuracy > 0.78
    assert train_digit_cnn().test_accuracy > 0.95


def test_digit_pngs_round_trip_to_the_same_pixels(tmp_path):
    from PIL import Image

    split = load_digits_split()
    (path, label), = write_digit_pngs(tmp_path, count=1)
    small = np.asarray(Image.open(path).convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float32) / 255
    assert label == split.y_test[0]
    assert np.abs(small - split.x_test[0, 0]).max() < 1 / 255
