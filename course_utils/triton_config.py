"""Write and check Triton's config.pbtxt with Triton's own ModelConfig protobuf.

`model_config()` builds a config in Python, `config_text()` prints it the way
config.pbtxt is written, `parse_config()` reads one with the error a load request
does not give you (it answers "failed to poll from model repository"; the line:column
is only in the server's log), and
`validate_model()` adds the semantic checks learners trip on. Each problem names the
field and the fix.
"""

from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

ModelConfig = mc.ModelConfig

# The file each platform/backend expects in a version folder (Triton's defaults).
DEFAULT_MODEL_FILES = {
    "onnxruntime_onnx": "model.onnx", "onnxruntime": "model.onnx",
    "pytorch_libtorch": "model.pt", "pytorch": "model.pt",
    "tensorrt_plan": "model.plan", "tensorrt": "model.plan",
    "python": "model.py", "ensemble": None,
}
NUMPY_TO_TRITON = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
                   "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
                   "object": "TYPE_STRING", "bytes": "TYPE_STRING"}


class ConfigError(ValueError):
    """A config.pbtxt that Triton would reject or serve wrongly."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model's config: the field, what is wrong, how to fix it."""

    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} Fix: {self.fix}"


# ----- building ----------------------------------------------------------------------------
def io_tensor(name: str, data_type: str, dims: Sequence[int]) -> dict:
    """An input or output entry for model_config(), e.g. io_tensor("input", "TYPE_FP32", [4]).

    Introduced in 04_triton.
    """
    return {"name": name, "data_type": data_type, "dims": list(dims)}


def model_config(name: str, *, platform: str = "", backend: str = "", max_batch_size: int = 0,
                 inputs: Sequence[dict] = (), outputs: Sequence[dict] = (), instance_count: int = 1,
                 instance_kind: str = "KIND_CPU", dynamic_batching: dict | None = None,
                 latest_versions: int | None = None, versions: Sequence[int] | None = None) -> ModelConfig:
    """Build a ModelConfig (Triton's protobuf) from plain Python values.

    `dynamic_batching` is e.g. {} (Triton's recommended start: `dynamic_batching { }`) or
    {"max_queue_delay_microseconds": 500, "preferred_batch_size": [4, 8]};
    give `latest_versions` or `versions` for a version policy (default: latest 1).

    Introduced in 04_triton.
    """
    config = ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=max_batch_size)
    for tensor in inputs:
        config.input.add(name=tensor["name"], data_type=tensor["data_type"], dims=tensor["dims"])
    for tensor in outputs:
        config.output.add(name=tensor["name"], data_type=tensor["data_type"], dims=tensor["dims"])
    config.instance_group.add(count=instance_count, kind=instance_kind)
    if dynamic_batching is not None:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.preferred_batch_size.extend(dynamic_batching.get("preferred_batch_size", []))
        config.dynamic_batching.max_queue_delay_microseconds = dynamic_batching.get("max_queue_delay_microseconds", 0)
    if latest_versions is not None:
        config.version_policy.latest.num_versions = latest_versions
    elif versions is not None:
        config.version_policy.specific.versions.extend(versions)
    return config


def config_text(config: ModelConfig) -> str:
    """The config as config.pbtxt text (protobuf text format, lists written as [ a, b ]).

    Introduced in 04_triton.
    """
    repeated = re.compile(r"^(\s*(?:dims|preferred_batch_size|gpus|versions|fp32_false_true)): (\S+)$")
    merged: list[tuple[str, list[str]] | str] = []
    for line in text_format.MessageToString(config).splitlines():
        match = repeated.match(line)
        if match and merged and isinstance(merged[-1], tuple) and merged[-1][0] == match.group(1):
            merged[-1][1].append(match.group(2))
        elif match:
            merged.append((match.group(1), [match.group(2)]))
        else:
            merged.append(line)
    text = [item if isinstance(item, str) else f"{item[0]}: [ {', '.join(item[1])} ]" for item in merged]
    return "\n".join(text) + "\n"


def write_config(model_dir: Path, config: ModelConfig) -> Path:
    """Write `config` to model_dir/config.pbtxt (creating the folder); return the path.

    Introduced in 04_triton.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(config_text(config))
    return path


def write_python_model(model_dir: Path, config: ModelConfig, model_file: Path) -> Path:
    """Write a Python-backend model folder: `config` as config.pbtxt and version 1's model.py (a copy of `model_file`).

    Returns the folder. Internal helper: no lesson calls it.
    """
    import shutil

    model_dir = Path(model_dir)
    write_config(model_dir, config)
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, model_dir / "1" / "model.py")
    return model_dir


# ----- parsing -----------------------------------------------------------------------------
def _all_field_names(descriptor=ModelConfig.DESCRIPTOR, seen: set | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return set()
    seen.add(descriptor.full_name)
    names = set()
    for f in descriptor.fields:
        names.add(f.name)
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            names |= _all_field_names(f.message_type, seen)
    return names


def _enum_values() -> set[str]:
    values = set()
    for enum in [mc.DataType, mc.ModelInstanceGroup.Kind]:
        values |= set(enum.keys())
    return values


def _hint(parse_message: str) -> str:
    field = re.search(r'has no field named "(\w+)"', parse_message)
    if field:
        close = difflib.get_close_matches(field.group(1), _all_field_names(), n=1)
        return f"did you mean {close[0]!r}?" if close else "check the spelling against Triton's model_config.proto"
    enum = re.search(r'has no value named "?(\w+)"?|Enum type .* has no value named (\w+)', parse_message)
    if enum:
        wrong = enum.group(1) or enum.group(2)
        close = difflib.get_close_matches(wrong, _enum_values(), n=1)
        return f"did you mean {close[0]}?" if close else "use a value like TYPE_FP32 or KIND_CPU"
    if "Expected" in parse_message:
        return "check brackets, braces and colons near that position (lists use [ ], messages use { })"
    return "compare the line with a working config.pbtxt"


def parse_config(text: str, source: str = "config.pbtxt") -> ModelConfig:
    """Parse config.pbtxt text into a ModelConfig; raise ConfigError naming the line and a fix.

    Introduced in 08_ensembles.
    """
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: {error} — {_hint(str(error))}") from None
    return config


def read_config(model_dir: Path) -> ModelConfig:
    """Read and parse model_dir/config.pbtxt.

    Introduced in 08_ensembles.
    """
    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: every model folder needs a config.pbtxt")
    return parse_config(path.read_text(), source=str(path))


# ----- semantic checks ---------------------------------------------------------------------
def has_gpu() -> bool:
    """True when an NVIDIA driver is visible (nvidia-smi on PATH): KIND_GPU can load here.

    Internal helper: no lesson calls it.
    """
    return shutil.which("nvidia-smi") is not None


def model_kind(config: ModelConfig) -> str:
    """The platform or backend a config names ("onnxruntime_onnx", "python", "ensemble", ...).

    Internal helper: no lesson calls it.
    """
    return config.platform or config.backend


def onnx_signature(path: Path) -> dict[str, dict[str, tuple[str, list]]]:
    """Inputs and outputs of an ONNX file: {"inputs": {name: (TYPE_x, dims)}, "outputs": {...}}.

    Dynamic dimensions are -1. Introduced in ex05_config_debugging.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def describe(values: Iterable) -> dict[str, tuple[str, list]]:
        out = {}
        for value in values:
            if value.name in initializers:
                continue
            tensor_type = value.type.tensor_type
            numpy_name = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
            out[value.name] = (NUMPY_TO_TRITON.get(numpy_name, numpy_name), dims)
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def _check_io(config: ModelConfig) -> list[Problem]:
    problems = []
    if not config.input and model_kind(config) != "ensemble":
        problems.append(Problem("input", "the config declares no inputs.", "add an input [ { name, data_type, dims } ]."))
    for section in ("input", "output"):
        names = [t.name for t in getattr(config, section)]
        for name in {n for n in names if names.count(n) > 1}:
            problems.append(Problem(f"{section} {name!r}", "this name is declared twice.", "give each tensor its own name."))
        for tensor in getattr(config, section):
            if not tensor.dims and not tensor.reshape.shape:
                problems.append(Problem(f"{section} {tensor.name!r} dims", "dims is empty.",
                                        "list the shape of ONE sample, e.g. dims: [ 4 ]."))
            if tensor.data_type == mc.TYPE_INVALID:
                problems.append(Problem(f"{section} {tensor.name!r} data_type", "data_type is missing.",
                                        "set it, e.g. data_type: TYPE_FP32."))
    return problems


def _check_batching(config: ModelConfig) -> list[Problem]:
    problems = []
    if config.max_batch_size < 0:
        problems.append(Problem("max_batch_size", f"{config.max_batch_size} is negative.",
                                "use 0 (no batching) or a positive limit like 32."))
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append(Problem("dynamic_batching", "dynamic batching needs max_batch_size > 0.",
                                    "set max_batch_size (e.g. 32) or remove dynamic_batching."))
        too_big = [b for b in config.dynamic_batching.preferred_batch_size if b > config.max_batch_size]
        if too_big and config.max_batch_size > 0:
            problems.append(Problem("dynamic_batching.preferred_batch_size",
                                    f"{too_big} exceed max_batch_size {config.max_batch_size}.",
                                    f"keep every preferred size <= {config.max_batch_size}, or raise max_batch_size."))
    if config.max_batch_size > 0:
        for section in ("input", "output"):
            for tensor in getattr(config, section):
                if len(tensor.dims) > 1 and tensor.dims[0] == -1:
                    problems.append(Problem(
                        f"{section} {tensor.name!r} dims",
                        f"dims {list(tensor.dims)} start with -1, but with max_batch_size > 0 Triton adds the "
                        "batch dimension itself.", f"drop the batch dimension: dims: {list(tensor.dims[1:])}."))
    return problems


def _check_against_onnx(config: ModelConfig, onnx_path: Path) -> list[Problem]:
    problems = []
    signature = onnx_signature(onnx_path)
    batch = 1 if config.max_batch_size > 0 else 0
    for section, key in (("input", "inputs"), ("output", "outputs")):
        actual = signature[key]
        for tensor in getattr(config, section):
            if tensor.name not in actual:
                problems.append(Problem(f"{section} {tensor.name!r} name",
                                        f"{onnx_path.name} has no {section} named {tensor.name!r} (it has {sorted(actual)}).",
                                        f"use the ONNX name: name: {sorted(actual)[0]!r}." if actual else
                                        "export the model with input_names/output_names."))
                continue
            data_type, dims = actual[tensor.name]
            declared = mc.DataType.Name(tensor.data_type)
            if declared != data_type:
                problems.append(Problem(f"{section} {tensor.name!r} data_type",
                                        f"config says {declared}, the ONNX file has {data_type}.",
                                        f"data_type: {data_type}."))
            per_sample = dims[batch:]
            if batch and tensor.dims and tensor.dims[0] == -1:
                continue  # already reported by _check_batching
            if batch and len(dims) == len(tensor.dims):
                problems.append(Problem(f"{section} {tensor.name!r} dims",
                                        f"dims {list(tensor.dims)} include the batch dimension; with max_batch_size > 0 "
                                        "Triton adds it itself.", f"dims: {per_sample}."))
            elif len(per_sample) != len(tensor.dims) or any(
                    want != -1 and have != -1 and want != have for want, have in zip(tensor.dims, per_sample)):
                problems.append(Problem(f"{section} {tensor.name!r} dims",
                                        f"config dims {list(tensor.dims)} do not match the ONNX shape {dims} "
                                        f"({'first dimension is the batch' if batch else 'no batch dimension'}).",
                                        f"dims: {per_sample}."))
        if batch:
            for name, (_, dims) in actual.items():
                if dims and dims[0] != -1:
                    problems.append(Problem("max_batch_size", f"the ONNX {section} {name!r} has a fixed first "
                                            f"dimension {dims[0]}, so batches other than {dims[0]} fail.",
                                            "export with a dynamic batch axis (dynamic_axes / dynamic_shapes) "
                                            "or set max_batch_size: 0."))
        missing = sorted(set(actual) - {t.name for t in getattr(config, section)})
        if missing and section == "input":
            problems.append(Problem("input", f"the ONNX model also needs inputs {missing}.", "declare them in the config."))
    return problems


def _check_versions(config: ModelConfig, model_dir: Path) -> list[Problem]:
    kind = model_kind(config)
    if kind == "ensemble":
        return []
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        return [Problem("version folders", f"{model_dir.name}/ has no numeric version folder.",
                        f"put the model file in {model_dir.name}/1/.")]
    problems = []
    filename = config.default_model_filename or DEFAULT_MODEL_FILES.get(kind)
    if filename:
        for version in versions:
            if not (model_dir / str(version) / filename).exists():
                present = sorted(p.name for p in (model_dir / str(version)).iterdir())
                problems.append(Problem(f"version {version}", f"{model_dir.name}/{version}/ has no {filename} "
                                        f"(it holds {present}).", f"save the model as {model_dir.name}/{version}/{filename}."))
    wanted = list(config.version_policy.specific.versions) if config.version_policy.HasField("specific") else []
    for version in wanted:
        if version not in versions:
            problems.append(Problem("version_policy.specific", f"version {version} has no folder (found {versions}).",
                                    f"create {model_dir.name}/{version}/ or list only {versions}."))
    return problems


def data_flow_order(config: ModelConfig) -> list[str]:
    """The ensemble's steps in the order Triton can run them: by data flow, not by their order in the file.

    A step runs once every tensor its input_map names exists (an ensemble input or another
    step's output). Steps that can never run (a cycle, a tensor nobody produces) are left out.
    Internal helper: no lesson calls it.
    """
    available = {t.name for t in config.input}
    waiting = list(config.ensemble_scheduling.step)
    order: list[str] = []
    while waiting:
        ready = [step for step in waiting if set(step.input_map.values()) <= available]
        if not ready:
            break
        for step in ready:
            order.append(step.model_name)
            available |= set(step.output_map.values())
            waiting.remove(step)
    return order


def _check_ensemble(config: ModelConfig, repository: Path | None) -> list[Problem]:
    problems = []
    steps = config.ensemble_scheduling.step
    if not steps:
        return [Problem("ensemble_scheduling", "an ensemble needs at least one step.", "add ensemble_scheduling { step [ ... ] }.")]
    # Triton runs steps by data flow, so a step may read a tensor a step further down the file writes.
    available = {t.name for t in config.input} | {t for step in steps for t in step.output_map.values()}
    for index, step in enumerate(steps):
        where = f"ensemble_scheduling.step[{index}] ({step.model_name})"
        step_config = None
        if repository is not None:
            if not (repository / step.model_name / "config.pbtxt").is_file():
                problems.append(Problem(f"{where}.model_name", f"no model {step.model_name!r} in the repository.",
                                        "write that model's folder, or fix the name."))
            else:
                try:
                    step_config = read_config(repository / step.model_name)
                except ConfigError as error:
                    problems.append(Problem(f"{where}.model_name", f"its config does not parse: {error}", "fix that config first."))
        for model_input, tensor in step.input_map.items():
            if tensor not in available:
                problems.append(Problem(f"{where}.input_map", f"value {tensor!r} is not an ensemble input or any "
                                        f"step's output (known: {sorted(available)}).",
                                        "input_map is { key: <the step model's input name>, value: <ensemble tensor> }."))
            if step_config is not None and model_input not in {t.name for t in step_config.input}:
                problems.append(Problem(f"{where}.input_map", f"key {model_input!r} is not an input of {step.model_name!r} "
                                        f"(its inputs: {[t.name for t in step_config.input]}).",
                                        "keys are the step model's own tensor names; values are ensemble tensor names."))
        for model_output in step.output_map:
            if step_config is not None and model_output not in {t.name for t in step_config.output}:
                problems.append(Problem(f"{where}.output_map", f"key {model_output!r} is not an output of {step.model_name!r} "
                                        f"(its outputs: {[t.name for t in step_config.output]}).",
                                        "keys are the step model's own tensor names; values are ensemble tensor names."))
    if not problems:
        stuck = [step.model_name for step in steps if step.model_name not in data_flow_order(config)]
        if stuck:
            problems.append(Problem("ensemble_scheduling", f"step(s) {stuck} can never run: each waits for a tensor "
                                    "that only it, or a step after it in the data flow, produces (a cycle).",
                                    "follow the tensors from the ensemble's input: each step reads what an earlier one writes."))
    for tensor in config.output:
        if tensor.name not in available:
            problems.append(Problem(f"output {tensor.name!r}", "no step's output_map produces this ensemble output.",
                                    f"map a step output to it: output_map {{ key: \"...\" value: \"{tensor.name}\" }}."))
    return problems


def validate_config(config: ModelConfig, model_dir: Path | None = None, repository: Path | None = None,
                    gpu_available: bool | None = None) -> list[Problem]:
    """Semantic problems of a parsed config (empty list = none found).

    With `model_dir` it also checks the folder name, version folders and, for ONNX
    models, names/dtypes/shapes against the file; with `repository` it checks that
    ensemble steps exist and their maps name real tensors. `gpu_available` defaults to has_gpu().

    Introduced in 08_ensembles.
    """
    problems: list[Problem] = []
    kind = model_kind(config)
    if not kind:
        problems.append(Problem("platform/backend", "neither platform nor backend is set.",
                                'set platform: "onnxruntime_onnx", "pytorch_libtorch" or "ensemble", or backend: "python".'))
    elif kind not in DEFAULT_MODEL_FILES:
        close = difflib.get_close_matches(kind, list(DEFAULT_MODEL_FILES), n=1)
        problems.append(Problem("platform/backend", f"{kind!r} is not a platform or backend this course knows.",
                                f"did you mean {close[0]!r}?" if close else "use one of " + ", ".join(DEFAULT_MODEL_FILES)))
    problems += _check_io(config) + _check_batching(config)
    if not (has_gpu() if gpu_available is None else gpu_available):
        for group in config.instance_group:
            if group.kind == mc.ModelInstanceGroup.KIND_GPU:
                problems.append(Problem("instance_group.kind", "KIND_GPU but this machine has no GPU: a real Triton "
                                        "fails to load it.", "use kind: KIND_CPU here (course_utils' CPU server "
                                        "switches it for you and logs that), keep KIND_GPU for the GPU stack."))
    if kind == "ensemble":
        problems += _check_ensemble(config, repository)
    if model_dir is not None:
        model_dir = Path(model_dir)
        if config.name and config.name != model_dir.name:
            problems.append(Problem("name", f"name {config.name!r} differs from the folder name {model_dir.name!r}.",
                                    f'name: "{model_dir.name}" (or rename the folder).'))
        problems += _check_versions(config, model_dir)
        if kind in ("onnxruntime_onnx", "onnxruntime"):
            for onnx_file in sorted(model_dir.glob(f"[0-9]*/{config.default_model_filename or 'model.onnx'}"))[-1:]:
                problems += _check_against_onnx(config, onnx_file)
    return problems


def validate_model(model_dir: Path, gpu_available: bool | None = None) -> list[Problem]:
    """Parse model_dir/config.pbtxt and run every check; a parse error becomes one Problem.

    Introduced in 04_triton.
    """
    model_dir = Path(model_dir)
    try:
        config = read_config(model_dir)
    except ConfigError as error:
        return [Problem("config.pbtxt", str(error), "fix the text before anything else: a load request would only "
                        "answer 'failed to poll from model repository' (the line:column is in the server's log).")]
    return validate_config(config, model_dir=model_dir, repository=model_dir.parent, gpu_available=gpu_available)
