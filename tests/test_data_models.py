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


def test_every_shipped_model_loads_as_tensors_only_and_scores_as_the_lessons_print():
    from course_utils.machinery.weights import SHIPPED
    from course_utils.models import load_churn_model, load_digit_cnn, weights_file

    assert all(weights_file(name, seed, epochs).is_file() for name, seed, epochs in SHIPPED)
    assert round(load_churn_model().test_accuracy, 3) == 0.823      # lesson 00
    assert round(load_digit_cnn().test_accuracy, 3) == 0.981
    assert torch.equal(load_churn_model().model.net[0].weight, load_churn_model().model.net[0].weight)


def test_a_model_the_course_does_not_ship_is_refused_with_what_to_do():
    from course_utils.models import load_churn_model

    with pytest.raises(ValueError, match=r"ships: churn_seed0_epochs30.*train_churn_model\(seed=5, epochs=30\)"):
        load_churn_model(seed=5)


def test_training_here_gives_the_shipped_digit_cnn_within_this_cpus_rounding():
    """The shipped files are what the training code makes: on any CPU, retraining agrees with them."""
    from course_utils.models import load_digit_cnn

    shipped, again = load_digit_cnn(), train_digit_cnn()
    with torch.no_grad():
        x = torch.from_numpy(shipped.data.x_test)
        agreement = float((shipped.model(x).argmax(1) == again.model(x).argmax(1)).float().mean())
    assert abs(shipped.test_accuracy - again.test_accuracy) <= 0.01 and agreement >= 0.98, agreement
