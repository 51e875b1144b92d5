"""A model whose answer is drawn at random: it samples a class from the probabilities it is given.

Sampling heads like this one (a language model's next token at temperature > 0, a recommender that
explores, Monte Carlo dropout) answer the same input differently on purpose. Lesson 18 serves it with
and without Triton's response cache to show what a cache does to such a model.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.rng = np.random.default_rng()   # unseeded: a fresh draw per request, as a sampler must

    def execute(self, requests):
        responses = []
        for request in requests:
            probabilities = pb_utils.get_input_tensor_by_name(request, "PROBABILITIES").as_numpy().astype(np.float64)
            if not (np.isfinite(probabilities).all() and (probabilities >= 0).all()
                    and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "PROBABILITIES must be finite, non-negative and sum to 1 in each row",
                    pb_utils.TritonError.INVALID_ARG)))
                continue
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            drawn = [self.rng.choice(len(row), p=row) for row in probabilities]
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("CLASS", np.array(drawn, dtype=np.int64).reshape(-1, 1))]))
        return responses
