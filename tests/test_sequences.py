"""Lesson 20's stateful model against a real Triton: answers follow each sequence's own history over HTTP and
gRPC; every hostile sequence request (unknown ID, END without START, a string or malformed ID, a batch, NaN) is
refused for that request only with the status lesson 20 teaches; a refused START still holds its slot; a second
START restarts a sequence; and the Python backend of Triton 2.51 does not carry implicit state (lesson 20 says so)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

IMPLICIT_STATE_PROBE = '''
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            state = pb_utils.get_input_tensor_by_name(request, "STATE_IN").as_numpy()
            total = (state + pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy()).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("TOTAL", total), pb_utils.Tensor("STATE_OUT", total)]))
        return responses
'''


def write_implicit_state_probe(repository):
    """A running total kept in Triton's implicit state (the input state plus VALUE, returned as the new state)."""
    from course_utils.triton_config import io_tensor, model_config, write_config

    config = model_config("implicit_total", backend="python", max_batch_size=4,
                          inputs=[io_tensor("VALUE", "TYPE_FP32", [1])],
                          outputs=[io_tensor("TOTAL", "TYPE_FP32", [1])])
    state = config.sequence_batching.state.add(input_name="STATE_IN", output_name="STATE_OUT",
                                               data_type="TYPE_FP32", dims=[1])
    state.initial_state.add(data_type="TYPE_FP32", dims=[1], zero_data=True, name="zero")
    config.sequence_batching.control_input.add(name="START").control.add(
        kind="CONTROL_SEQUENCE_START").fp32_false_true.extend([0, 1])
    write_config(repository / "implicit_total", config)
    (repository / "implicit_total" / "1").mkdir()
    (repository / "implicit_total" / "1" / "model.py").write_text(IMPLICIT_STATE_PROBE)


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from course_utils.sequences import write_running_score
    from course_utils.servers.triton import TritonServer

    folder = tmp_path_factory.mktemp("sequences")
    write_running_score(folder / "repo", "direct", strategy="direct", idle_ms=1000)
    write_running_score(folder / "repo", "oldest", strategy="oldest", idle_ms=1000, max_candidate_sequences=16)
    write_implicit_state_probe(folder / "repo")
    with TritonServer(folder / "repo", folder / "server", models=["direct", "oldest", "implicit_total"]) as server:
        yield server


def send(triton, model: str, reading: float, grpc: bool = False, output: str = "", **sequence):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = grpcclient if grpc else httpclient
    client = module.InferenceServerClient(triton.grpc_url if grpc else triton.http_url)
    tensor = module.InferInput("VALUE", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.array([[reading]], dtype=np.float32))
    result = client.infer(model, [tensor], **sequence)
    if output:
        return float(result.as_numpy(output)[0, 0])
    return int(result.as_numpy("COUNT")[0, 0]), float(result.as_numpy("MEAN")[0, 0]), float(result.as_numpy("SCORE")[0, 0])


@pytest.mark.parametrize("model", ["direct", "oldest"])
def test_interleaved_sequences_over_http_and_grpc_follow_their_own_history(triton, model):
    from course_utils.sequences import running_scores

    a, b = [10.0, 11.0, 9.0, 10.0, 30.0], [28.0, 31.0, 29.0, 30.0, 10.0]
    got_a, got_b = [], []
    for i, (x, y) in enumerate(zip(a, b)):
        flags = {"sequence_start": i == 0, "sequence_end": i == len(a) - 1}
        got_a.append(send(triton, model, x, sequence_id=11, **flags))
        got_b.append(send(triton, model, y, grpc=True, sequence_id=12, **flags))
    assert np.allclose(got_a, running_scores(a), atol=1e-4)
    assert np.allclose(got_b, running_scores(b), atol=1e-4)


def test_hostile_sequence_requests_fail_alone_with_their_reason(triton):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from course_utils.sequences import running_scores

    pids = triton.pids()
    send(triton, "direct", 5.0, sequence_id=20, sequence_start=True)   # a live neighbour

    def refused(status: str, action) -> str:
        with pytest.raises(InferenceServerException) as error:
            action()
        assert error.value.status() == status, error.value.message()
        return error.value.message()

    def batch_of_two():
        tensor = httpclient.InferInput("VALUE", [2, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0], [2.0]], dtype=np.float32))
        httpclient.InferenceServerClient(triton.http_url).infer("direct", [tensor], sequence_id=21, sequence_start=True)

    assert "must specify the START flag" in refused("400", lambda: send(triton, "direct", 1.0, sequence_id=22))
    assert "must specify the START flag" in refused("400", lambda: send(triton, "direct", 1.0, sequence_id=23,
                                                                        sequence_end=True))
    assert "non-zero or non-empty correlation ID" in refused("400", lambda: send(triton, "direct", 1.0))
    assert "batch-size 1" in refused("400", batch_of_two)
    assert "TYPE_UINT64" in refused("400", lambda: send(triton, "direct", 1.0, sequence_id="sensor-a",
                                                        sequence_start=True))
    assert "one finite reading" in refused("400", lambda: send(triton, "oldest", float("inf"), sequence_id=24,
                                                               sequence_start=True))
    for malformed in (-1, 1.5, True):
        assert "Unable to parse 'sequence_id'" in refused("500", lambda: send(triton, "direct", 1.0, sequence_id=malformed,
                                                                             sequence_start=True))
    assert np.allclose(send(triton, "direct", 7.0, sequence_id=20, sequence_end=True), running_scores([5.0, 7.0])[-1])
    assert triton.pids() == pids and triton.dead_stubs() == {}


def test_a_refused_start_still_holds_its_slot_until_it_idles_out(triton):
    from tritonclient.utils import InferenceServerException

    time.sleep(1.5)   # earlier tests' sequences have idled out
    for sequence in range(31, 35):   # four STARTs the model refuses: Triton has given each a slot of the 4
        with pytest.raises(InferenceServerException):
            send(triton, "direct", float("nan"), sequence_id=sequence, sequence_start=True)
    started = time.perf_counter()
    assert send(triton, "direct", 1.0, sequence_id=35, sequence_start=True, sequence_end=True)[0] == 1
    assert 0.5 < time.perf_counter() - started < 2.5


def test_a_second_start_restarts_the_sequence_and_triton_logs_it(triton):
    send(triton, "oldest", 1.0, sequence_id=40, sequence_start=True)
    assert send(triton, "oldest", 2.0, sequence_id=40)[0] == 2
    assert send(triton, "oldest", 3.0, sequence_id=40, sequence_start=True)[0] == 1
    time.sleep(0.2)
    assert "Previous sequence will be terminated early" in triton.log_path.read_text()


def test_the_python_backend_does_not_carry_implicit_state(triton):
    """Lesson 20: Triton 2.51's Python backend passes the initial state in and drops the state a model returns."""
    totals = [send(triton, "implicit_total", value, output="TOTAL", sequence_id=50, sequence_start=(i == 0))
              for i, value in enumerate([1.0, 2.0, 4.0])]
    assert totals == [1.0, 2.0, 4.0]   # a carried state would give 1, 3, 7
