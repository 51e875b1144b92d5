"""The cheapest model that reads a whole image: the mean of each colour channel of IMAGE [3, 224, 224].

Lesson 19 sends it lesson 12's ResNet-sized input (602 KB of FP32) over JSON, binary HTTP, gRPC and
system shared memory: its compute is small, so what is measured is how the bytes travel.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()   # (N, 3, 224, 224)
            means = image.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
            if not np.isfinite(means).all():
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "IMAGE holds NaN or infinite values; send finite pixel values", pb_utils.TritonError.INVALID_ARG)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("MEANS", means)]))
        return responses
