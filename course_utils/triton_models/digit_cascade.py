"""A cascade written with business-logic scripting (BLS): a cheap model answers, unless it is unsure.

The cheap model, softmax regression over the 64 pixels (650 parameters), runs here in numpy: it costs
less than a call to another model would. Samples whose top probability is below the `threshold`
parameter go to the model named by `expensive_model`, through Triton itself: a BLS request,
`pb_utils.InferenceRequest(...).exec()`, one per client request that has such samples. Each response
holds LOGITS (from whichever model answered) and EXPERT (True where the expensive model answered).
A request with a pixel outside [0, 1] (NaN included) gets INVALID_ARG (HTTP 400) here: the gate cannot
judge it, and Triton 2.51 hands a called model's error back with code INTERNAL, so the expensive model's
own 400 would reach the client as a 500. Any other error of the expensive model reaches that request's client with its
cause; the other requests of the batch are answered.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.threshold = float(parameters["threshold"])
        self.expensive_model = parameters["expensive_model"]
        cheap = np.load(Path(args["model_repository"]) / args["model_version"] / "cheap_model.npz")
        self.weight, self.bias = cheap["weight"], cheap["bias"]   # (10, 64), (10,)

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        pixels = pb_utils.get_input_tensor_by_name(request, "input__0").as_numpy()   # (N, 1, 8, 8)
        outside = ~((pixels >= 0) & (pixels <= 1))   # NaN compares False: outside
        if outside.any():
            where = [int(i) for i in np.argwhere(outside)[0]]
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                f"input 'input__0' holds {pixels[tuple(where)]} at index {where}; send pixel values in [0, 1] "
                "(an 8x8 digit's gray levels divided by 16)", pb_utils.TritonError.INVALID_ARG))
        logits = pixels.reshape(len(pixels), 64) @ self.weight.T + self.bias
        odds = np.exp(logits - logits.max(axis=1, keepdims=True))
        confident = (odds / odds.sum(axis=1, keepdims=True)).max(axis=1) >= self.threshold
        if not confident.all():
            unsure = pixels[~confident]
            call = pb_utils.InferenceRequest(model_name=self.expensive_model, requested_output_names=["output__0"],
                                             inputs=[pb_utils.Tensor("input__0", unsure)])
            answer = call.exec()
            if answer.has_error():
                error = answer.error()
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"the expensive model '{self.expensive_model}' failed on {len(unsure)} of this request's "
                    f"samples: {error.message()}", error.code()))
            logits[~confident] = pb_utils.get_output_tensor_by_name(answer, "output__0").as_numpy()
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("LOGITS", logits.astype(np.float32)),
            pb_utils.Tensor("EXPERT", (~confident).reshape(-1, 1))])
