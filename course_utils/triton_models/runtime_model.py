"""A Triton Python-backend model that runs an ONNX or TorchScript file on the CPU.

course_utils puts this file next to your model.onnx / model.pt when the embedded
CPU tritonserver lacks the onnxruntime or pytorch backend (see
course_utils.model_repository.serving_copy). Triton still does the scheduling,
dynamic batching, instance groups, versions and protocols; only the last step
(running the model file) happens here, with onnxruntime or torch.

All requests of one batch that Triton's scheduler formed are concatenated and run
in ONE call, as the real backends do.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.runtime = params["course_runtime"]
        model_file = Path(args["model_repository"]) / args["model_version"] / params["course_model_file"]
        self.batched = config.get("max_batch_size", 0) > 0
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]
        if self.runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            model_inputs = [i.name for i in self.session.get_inputs()]
            model_outputs = [o.name for o in self.session.get_outputs()]
            for name in self.inputs:
                if name not in model_inputs:
                    raise pb_utils.TritonModelException(
                        f"config.pbtxt input '{name}' is not an input of {model_file.name} "
                        f"(its inputs are {model_inputs}); use the ONNX names in config.pbtxt")
            for name, _ in self.outputs:
                if name not in model_outputs:
                    raise pb_utils.TritonModelException(
                        f"config.pbtxt output '{name}' is not an output of {model_file.name} "
                        f"(its outputs are {model_outputs}); use the ONNX names in config.pbtxt")
        elif self.runtime == "torchscript":
            import torch

            torch.set_num_threads(1)
            self.torch = torch
            self.module = torch.jit.load(str(model_file), map_location="cpu").eval()
        else:
            raise pb_utils.TritonModelException(f"unknown course_runtime {self.runtime!r}")

    def _run(self, arrays):
        if self.runtime == "onnxruntime":
            names = [name for name, _ in self.outputs]
            return self.session.run(names, dict(zip(self.inputs, arrays)))
        with self.torch.inference_mode():
            result = self.module(*[self.torch.from_numpy(a) for a in arrays])
        result = result if isinstance(result, (tuple, list)) else [result]
        return [r.numpy() for r in result]

    def execute(self, requests):
        try:
            per_request = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs]
                           for r in requests]
            if self.batched:
                sizes = [arrays[0].shape[0] for arrays in per_request]
                joined = [np.concatenate([arrays[i] for arrays in per_request]) for i in range(len(self.inputs))]
                outputs = self._run(joined)
                bounds = np.cumsum(sizes)[:-1]
                split = [np.split(output, bounds) for output in outputs]
                results = [[parts[k] for parts in split] for k in range(len(requests))]
            else:
                results = [self._run(arrays) for arrays in per_request]
        except Exception as error:  # one bad batch must not kill the model instance
            message = f"{type(error).__name__}: {error}"
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
                    for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype))
                    for (name, dtype), value in zip(self.outputs, values)])
                for values in results]
