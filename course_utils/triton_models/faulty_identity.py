"""A deliberately faulty Python-backend model for ex11's grader: it returns its input, and raises when any value
is negative.

Raising is the bug it stands for: the Python backend then fails every request of the batch with HTTP 500, and
Triton 2.51 counts them in nv_inference_request_failure{reason="BACKEND"}. (A model's own error response, a 400
it returns for bad input, counts as a success; a request Triton refuses before the model, a wrong shape or a
full queue, is not counted at all: tests/test_triton_metrics.py.) The grader needs failures that Triton counts, so that an error ratio has
something to measure.
"""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            if (values < 0).any():
                raise ValueError("a negative value (the bug this model stands for)")
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", values)]))
        return responses
