"""The serving copy: the folder the CPU-only embedded tritonserver reads instead of your repository.

You write a repository the production way (`platform: "onnxruntime_onnx"`,
`"pytorch_libtorch"`, `KIND_GPU` instance groups). The embedded tritonserver from
nvidia-pytriton only has the Python backend, so `serving_copy()` builds the folder it
actually reads: the same model names, inputs, outputs, dims, max_batch_size, dynamic
batching, version policy and instance counts, with

* `backend: "python"` and a small model.py (course_utils/triton_models/runtime_model.py)
  that runs your model.onnx with onnxruntime or your model.pt with torch.jit;
* KIND_GPU instance groups turned into KIND_CPU when there is no GPU.

Every change is returned as a note (the server logs them too). Your repository stays
untouched, so the GPU stack (real onnxruntime/libtorch/TensorRT backends) serves it as is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from ..paths import PACKAGE_DIR, replace_symlink
from ..triton_config import DEFAULT_MODEL_FILES, ConfigError, config_text, has_gpu, model_kind, read_config

RUNTIME_MODEL = PACKAGE_DIR / "triton_models" / "runtime_model.py"
# platform/backend -> the runtime model.py uses in its place
STAND_INS = {"onnxruntime_onnx": "onnxruntime", "onnxruntime": "onnxruntime",
             "pytorch_libtorch": "torchscript", "pytorch": "torchscript"}


def _serve_model(model_dir: Path, dest: Path, gpu_available: bool) -> list[str]:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        config = read_config(model_dir)
    except ConfigError:  # let Triton itself report it, as a real server would
        for entry in model_dir.iterdir():
            replace_symlink(dest / entry.name, entry)
        return [f"{model_dir.name}: config.pbtxt does not parse; passed to Triton unchanged"]
    kind = model_kind(config)
    notes = []
    if not gpu_available:
        for group in config.instance_group:
            if group.kind == mc.ModelInstanceGroup.KIND_GPU:
                group.kind = mc.ModelInstanceGroup.KIND_CPU
                del group.gpus[:]
                notes.append(f"{model_dir.name}: instance_group KIND_GPU -> KIND_CPU (no GPU on this machine)")
    runtime = STAND_INS.get(kind)
    model_file = config.default_model_filename or DEFAULT_MODEL_FILES.get(kind)
    if runtime:
        config.platform, config.backend = "", "python"
        config.default_model_filename = ""
        config.parameters["course_runtime"].string_value = runtime
        config.parameters["course_model_file"].string_value = model_file
        notes.append(f"{model_dir.name}: {kind} runs in Triton's python backend ({runtime} inside model.py); "
                     "scheduling, batching and versions are Triton's own")
    for entry in model_dir.iterdir():
        if entry.name == "config.pbtxt":
            continue
        if runtime and entry.is_dir() and entry.name.isdigit():
            (dest / entry.name).mkdir()
            for item in entry.iterdir():
                replace_symlink(dest / entry.name / item.name, item)
            shutil.copy(RUNTIME_MODEL, dest / entry.name / "model.py")
        else:
            replace_symlink(dest / entry.name, entry)
    header = f"# Serving copy of {model_dir / 'config.pbtxt'} made by course_utils for the CPU-only tritonserver.\n"
    header += "".join(f"# {note}\n" for note in notes)
    (dest / "config.pbtxt").write_text(header + config_text(config))
    return notes


def serving_copy(repository: Path, dest: Path, model: str | None = None,
                 gpu_available: bool | None = None) -> list[str]:
    """Build (or refresh, for one `model`) the folder the embedded tritonserver serves.

    Returns one note per change made, e.g. "churn: KIND_GPU -> KIND_CPU" (only
    where there is no GPU; `gpu_available` defaults to has_gpu()).
    Internal helper: no lesson calls it.
    """
    repository, dest = Path(repository).resolve(), Path(dest).resolve()
    if dest == repository or repository in dest.parents:
        raise ValueError(f"the serving copy must live outside the repository it copies ({repository}); "
                         "an external server (TRITON_URL) reads your repository directly and needs no copy")
    gpu_available = has_gpu() if gpu_available is None else gpu_available
    dest.mkdir(parents=True, exist_ok=True)
    names = [model] if model else [p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file()]
    notes = []
    for name in sorted(names):
        source = repository / name
        if not (source / "config.pbtxt").is_file():
            if (dest / name).exists():
                shutil.rmtree(dest / name)  # removed from the repository: let Triton see it gone
            continue
        notes += _serve_model(source, dest / name, gpu_available)
    return notes
