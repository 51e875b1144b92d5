"""A Triton Python-backend model that runs an ONNX or TorchScript file on the CPU.

course_utils puts this file next to your model.onnx / model.pt when the embedded
CPU tritonserver lacks the onnxruntime or pytorch backend (see
course_utils.servers.triton_serving_copy). Triton still does the scheduling,
dynamic batching, instance groups, versions and protocols; only the last step
(running the model file) happens here, with onnxruntime or torch.

All requests of one batch that Triton's scheduler formed are concatenated and run
in ONE call, as the real backends do. Triton has already checked each request's names,
datatypes and shapes against config.pbtxt; this model also refuses NaN and infinite
floats (an FP32 of 1e39 is infinite), per request, with INVALID_ARG (HTTP 400): the real
onnxruntime backend would answer NaN with 200. The other requests of the batch are served.
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
            # exact int8 products on x86 CPUs without VNNI, as course_utils.onnx_tools.onnx_session does
            flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
            if "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags):
                options.add_session_config_entry("session.x64quantprecision", "1")
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

    def _problem(self, arrays):
        """Why one request's input cannot be served ("" if it can): NaN or infinite floats."""
        for name, array in zip(self.inputs, arrays):
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
                return (f"input '{name}' holds a NaN or infinite value at index {list(where)}; send finite numbers "
                        f"within float32 range (about +-3.4e38)")
        return ""

    def execute(self, requests):
        per_request = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs]
                       for r in requests]
        responses = [None] * len(requests)
        good = []
        for index, arrays in enumerate(per_request):
            problem = self._problem(arrays)
            if problem:   # INVALID_ARG: HTTP 400 for this request only
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG))
            else:
                good.append(index)
        try:
            if self.batched and good:
                sizes = [per_request[i][0].shape[0] for i in good]
                joined = [np.concatenate([per_request[i][k] for i in good]) for k in range(len(self.inputs))]
                outputs = self._run(joined)
                split = [np.split(output, np.cumsum(sizes)[:-1]) for output in outputs]
                results = {i: [parts[n] for parts in split] for n, i in enumerate(good)}
            else:
                results = {i: self._run(per_request[i]) for i in good}
        except Exception as error:  # one bad batch must not kill the model instance
            message = f"{type(error).__name__}: {error}".encode("ascii", "backslashreplace").decode()
            results = {}
            for i in good:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
        for i, values in results.items():
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=dtype))
                for (name, dtype), value in zip(self.outputs, values)])
        return responses
