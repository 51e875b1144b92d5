"""Refuse what a digit model must not see: passes input__0 on as PIXELS when every value is in [0, 1].

Lesson 18 puts it in front of a cached model, as an ensemble's first step, so that a bad request is
refused here, every time, and never reaches the cached model (Triton 2.51 would store the cached model's
error as an empty answer and replay it with HTTP 200).
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            pixels = pb_utils.get_input_tensor_by_name(request, "input__0").as_numpy()
            outside = ~((pixels >= 0) & (pixels <= 1))   # NaN compares False: outside
            if outside.any():
                where = [int(i) for i in np.argwhere(outside)[0]]
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"input 'input__0' holds {pixels[tuple(where)]} at index {where}; send pixel values in [0, 1]",
                    pb_utils.TritonError.INVALID_ARG)))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PIXELS", pixels)]))
        return responses
