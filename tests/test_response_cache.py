"""Lesson 18's response cache: the flags and the config switch, the Zipf workload, and a real server that
caches only successful answers (bad input is refused every time, with its reason, and never stored)."""

from __future__ import annotations

import numpy as np
import pytest

from course_utils.response_cache import cache_flags, enable_response_cache, zipf_order


def test_the_zipf_order_is_seeded_and_skewed():
    order = zipf_order(360, 1000, seed=0)
    assert np.array_equal(order, zipf_order(360, 1000, seed=0)) and order.min() >= 0 and order.max() < 360
    counts = np.bincount(order, minlength=360)
    assert counts[0] > counts[9] > 0 and counts[:10].sum() > 400   # a few items take most requests


def test_the_switches_are_the_documented_ones(tmp_path):
    from course_utils.models import load_digit_cnn
    from course_utils.pipelines import write_digit_classifier
    from course_utils.triton_config import read_config

    flags = cache_flags(4096)
    assert flags[0] == "--cache-config=local,size=4096" and flags[1].startswith("--cache-directory=")
    assert (__import__("pathlib").Path(flags[1].split("=", 1)[1]) / "local" / "libtritoncache_local.so").is_file()
    folder = enable_response_cache(write_digit_classifier(tmp_path, load_digit_cnn().model))
    assert read_config(folder).response_cache.enable


@pytest.mark.slow
def test_a_check_in_front_keeps_bad_input_out_of_the_cache(tmp_path):
    """Triton 2.51 stores a cached model's error as an empty answer (lesson 18 teaches it: if a release
    fixes it, this test fails and the lesson must change); the checked ensemble refuses every time."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from course_utils.models import load_digit_cnn
    from course_utils.pipelines import write_digit_classifier
    from course_utils.pipelines import write_checked_ensemble
    from course_utils.response_cache import cache_counts, write_class_sampler
    from course_utils.servers.triton import TritonServer

    cnn = load_digit_cnn()
    enable_response_cache(write_digit_classifier(tmp_path / "repo", cnn.model, name="digits_cached"))
    write_checked_ensemble(tmp_path / "repo", "digits_cached", name="digits_checked")
    write_class_sampler(tmp_path / "repo", "sampler")
    with TritonServer(tmp_path / "repo", tmp_path / "server", models=["digits_checked", "sampler"],
                      extra_args=cache_flags(1 << 16)) as server:
        client = httpclient.InferenceServerClient(server.http_url)

        def call(model: str, values: np.ndarray, name: str = "input__0"):
            tensor = httpclient.InferInput(name, list(values.shape), "FP32")
            tensor.set_data_from_numpy(values.astype(np.float32))
            try:
                return 200, client.infer(model, [tensor]).get_response()["outputs"]
            except InferenceServerException as error:
                return int(error.status()), error.message()

        pids = server.pids()
        hostile = {"NaN": np.full((1, 1, 8, 8), np.nan), "infinite": np.full((1, 1, 8, 8), np.inf),
                   "negative": cnn.data.x_test[:1] - 1, "raw gray levels": cnn.data.x_test[:1] * 16 + 1}
        for case, values in hostile.items():
            for _ in range(2):   # refused every time: the error never reaches the cache
                status, message = call("digits_checked", values)
                assert status == 400 and "in [0, 1]" in message, (case, message)
        assert cache_counts(client.get_inference_statistics("digits_cached")) == (0, 0)
        good = [call("digits_checked", cnn.data.x_test[:1]) for _ in range(2)]
        assert good[0] == good[1] and good[0][0] == 200 and good[0][1][0]["name"] == "output__0"
        assert cache_counts(client.get_inference_statistics("digits_cached")) == (1, 1)
        # the trap itself: the cached model alone replays its own error as an empty 200
        first, second = call("digits_cached", hostile["NaN"]), call("digits_cached", hostile["NaN"])
        assert first[0] == 400 and "NaN" in first[1]
        assert second == (200, []), second
        odds = {"negative": np.array([[-0.5, 1.5] + [0.0] * 8]), "NaN": np.full((1, 10), np.nan),
                "all zero": np.zeros((1, 10)), "sum 2": np.full((1, 10), 0.2)}
        for case, values in odds.items():
            status, message = call("sampler", values, name="PROBABILITIES")
            assert status == 400 and "sum to 1" in message, (case, message)
        assert call("sampler", np.full((2, 10), 0.1), name="PROBABILITIES")[0] == 200
        assert server.pids() == pids
