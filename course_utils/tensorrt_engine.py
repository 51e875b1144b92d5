"""Build and run a TensorRT engine from an ONNX file, where a GPU allows.

TensorRT needs an NVIDIA GPU and its libraries (present in NGC containers such as
the course's GPU stack; not installable from PyPI on the course machines). Every
function here checks first and says plainly why it cannot run.

Written for TensorRT 10 (NGC 24.xx-25.xx) and 11:
* networks are always explicit-batch (the EXPLICIT_BATCH flag is ignored);
* tensors are addressed by name (`set_input_shape`, `set_tensor_address`,
  `execute_async_v3`), bindings are gone;
* networks are **strongly typed** (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`,
  required on 10.x, always on and ignored in 11): every tensor keeps the type the
  ONNX file gives it, so an fp32 file builds an fp32 engine and an fp16 file an fp16
  one. NVIDIA's route to the fp16 file is ModelOpt AutoCast (`autocast_fp16`).
  The weakly typed route, `BuilderFlag.FP16` letting TensorRT pick fp16 kernels, is
  deprecated since 10.12 and removed in 11; `build_engine(legacy_fp16=True)` keeps it
  for TensorRT 10 only, named as what it is.
Buffers are torch CUDA tensors, so no pycuda is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tensorrt_status() -> tuple[bool, str]:
    """(True, version) where TensorRT and a CUDA GPU are usable, else (False, the reason).

    Introduced in 06_onnx_and_tensorrt.
    """
    try:
        import tensorrt as trt
    except ImportError:
        return False, "TensorRT is not installed (it ships in NGC containers; PyPI has no usable CPU build)"
    import torch

    if not torch.cuda.is_available():
        return False, f"TensorRT {trt.__version__} is installed but no CUDA GPU is visible to torch"
    return True, f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(0)}"


def autocast_fp16(onnx_path: Path, out_path: Path) -> Path:
    """Write a mixed fp32/fp16 copy of `onnx_path` with ModelOpt AutoCast; return its path.

    AutoCast keeps in fp32 the nodes whose values fp16 cannot hold, and keeps the
    inputs and outputs fp32 (`keep_io_types`), so the same fp32 buffers feed the engine.
    ModelOpt's ONNX extra pins onnxruntime-gpu, so it is not in the course's CPU environment:
    install it in the GPU stack (`pip install "nvidia-modelopt[onnx]"`).
    Introduced in 06_onnx_and_tensorrt.
    """
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as error:
        raise RuntimeError("ModelOpt AutoCast is not installed (pip install \"nvidia-modelopt[onnx]\" on the GPU "
                           "stack); without it there is no fp16 ONNX file for a strongly typed fp16 engine") from error
    import onnx

    converted = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(out_path))
    return out_path


def build_engine(onnx_path: Path, plan_path: Path, input_name: str, sample_shape: tuple[int, ...],
                 min_batch: int = 1, opt_batch: int = 8, max_batch: int = 64, legacy_fp16: bool = False) -> Path:
    """Parse `onnx_path` into a strongly typed network, build an engine with a dynamic-batch profile, save the plan.

    `sample_shape` is one sample's shape (e.g. (1, 8, 8)); the profile allows batches
    min_batch..max_batch and tunes kernels for opt_batch. The engine computes in the
    ONNX file's types. `legacy_fp16=True` builds the deprecated weakly typed way
    (BuilderFlag.FP16, TensorRT 10 only; TensorRT 11 refuses it with the reason).
    Introduced in 06_onnx_and_tensorrt.
    """
    available, reason = tensorrt_status()
    if not available:
        raise RuntimeError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    if legacy_fp16 and not hasattr(trt.BuilderFlag, "FP16"):   # TensorRT 11: strongly typed networks only
        raise RuntimeError(f"TensorRT {trt.__version__} has no FP16 builder flag: precision comes from the ONNX file. "
                           "Convert it with autocast_fp16() (ModelOpt AutoCast) and build without legacy_fp16")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(0 if legacy_fp16 else strongly_typed)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (min_batch, *sample_shape), (opt_batch, *sample_shape), (max_batch, *sample_shape))
    config.add_optimization_profile(profile)
    if legacy_fp16:
        config.set_flag(trt.BuilderFlag.FP16)   # weakly typed: TensorRT may pick fp16 kernels for any layer
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; see the log lines above")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(plan))
    return plan_path


class TensorRTRunner:
    """Run a serialized engine on batches of NumPy input (one input, one output).

    Introduced in 06_onnx_and_tensorrt.
    """

    def __init__(self, plan_path: Path) -> None:
        available, reason = tensorrt_status()
        if not available:
            raise RuntimeError(f"cannot run a TensorRT engine: {reason}")
        import tensorrt as trt
        import torch

        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        source = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.input, tuple(source.shape))
        result = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input, source.data_ptr())
        self.context.set_tensor_address(self.output, result.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return result.cpu().numpy()
