"""A stateful model: a streaming anomaly score for each sequence (one sensor's stream of readings).

Each request carries one reading, VALUE [1]. For the request's sequence the model keeps the count, mean
and spread of the readings seen before (Welford's running algorithm) and answers:
  COUNT [1]  readings seen in this sequence, this one included
  MEAN  [1]  their mean
  SCORE [1]  how unusual this reading is: (value - mean before it) / standard deviation before it,
             0 until two earlier readings exist
So the same VALUE gets a different answer depending on what came before it in the same sequence.

Triton's sequence batcher routes the requests and fills the control inputs (lesson 20):
  START  1 on a sequence's first request: the model starts a fresh state
  END    1 on its last request: the model answers, then forgets the sequence
  READY  0 on the empty places the direct strategy pads a batch with: answered with zeros, state untouched
  CORRID the sequence's ID as a UINT64 tensor
The Python backend in Triton 2.51 passes implicit state in (`sequence_batching { state [...] }`) but does
not keep what the model returns, so this model keeps each sequence's state itself, keyed by the
request's correlation ID. Triton does not tell a model when it drops an idle sequence; the model drops
any state idle for twice max_sequence_idle_microseconds (by then Triton has dropped the sequence too), so
abandoned sequences do not pile up.
"""

import json
import math
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _error(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def _flag(request, name, absent=False):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return absent if tensor is None else bool(tensor.as_numpy().ravel()[0])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 1_000_000)
        self.idle_s = idle_us / 1e6          # Triton's default is 1 s
        self.states = {}                     # correlation ID -> [count, mean, m2, last seen (monotonic s)]

    def _forget_idle(self, now):
        for key in [key for key, state in self.states.items() if now - state[3] > 2 * self.idle_s]:
            del self.states[key]

    def _answer(self, request, now):
        sequence = request.correlation_id()
        if isinstance(sequence, str):
            return _error(f"sequence ID {sequence!r} is a string; this model's CORRID is TYPE_UINT64: "
                          "send a positive integer sequence_id")
        value = pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy().astype(np.float64)
        if value.size != 1 or not np.isfinite(value).all():
            return _error(f"VALUE must be one finite reading per request, got {value.ravel()[:4].tolist()}")
        value = float(value.ravel()[0])
        if _flag(request, "START"):
            self.states[sequence] = [0, 0.0, 0.0, now]
        state = self.states.get(sequence)
        if state is None:
            return _error(f"sequence {sequence} has no state here (it was idle longer than {self.idle_s:g} s, "
                          "or the model was reloaded): start it again with sequence_start=True")
        count, mean, m2, _ = state
        spread = math.sqrt(m2 / (count - 1)) if count >= 2 else 0.0
        score = (value - mean) / spread if spread > 0 else 0.0
        count += 1
        delta = value - mean
        mean += delta / count
        m2 += delta * (value - mean)
        self.states[sequence] = [count, mean, m2, now]
        if _flag(request, "END"):
            del self.states[sequence]
        return self._response(count, mean, score)

    @staticmethod
    def _response(count, mean, score):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("COUNT", np.array([[count]], dtype=np.int64)),
            pb_utils.Tensor("MEAN", np.array([[mean]], dtype=np.float32)),
            pb_utils.Tensor("SCORE", np.array([[score]], dtype=np.float32))])

    def execute(self, requests):
        now = time.monotonic()
        self._forget_idle(now)
        responses = []
        for request in requests:
            if not _flag(request, "READY", absent=True):
                responses.append(self._response(0, 0.0, 0.0))   # a padding place: Triton discards this answer
                continue
            responses.append(self._answer(request, now))
        return responses
