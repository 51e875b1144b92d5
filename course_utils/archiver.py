"""Model archives (.mar): TorchScript export, the real torch-model-archiver, and
running a handler in-process before archiving it."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .paths import HANDLERS_DIR
from .tools import tool, tool_env


@dataclass(frozen=True)
class Archive:
    """A .mar file and the exact command that built it."""

    path: Path
    command: list[str]

    @property
    def command_line(self) -> str:
        """The command as you would type it in a terminal."""
        return shlex.join(self.command)


def handler_file(name: str) -> Path:
    """Path of one of the course's reference handlers, e.g. handler_file("churn_handler").

    Introduced in 01_torchserve_architecture.
    """
    path = HANDLERS_DIR / f"{name.removesuffix('.py')}.py"
    if not path.exists():
        known = sorted(p.stem for p in HANDLERS_DIR.glob("*.py"))
        raise FileNotFoundError(f"no course handler named {name!r}; known handlers: {known}")
    return path


def save_torchscript(model: torch.nn.Module, path: Path, example: torch.Tensor | None = None) -> Path:
    """Save `model` as TorchScript: scripted, or traced when an `example` input is given.

    Introduced in 01_torchserve_architecture.
    """
    model.eval()
    scripted = torch.jit.trace(model, example) if example is not None else torch.jit.script(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    return path


def write_model_file(model_class: type[torch.nn.Module], folder: Path) -> Path:
    """Write the source of `model_class` to FOLDER/<module>.py, for torch-model-archiver's --model-file.

    TorchServe imports that file, builds the one nn.Module class in it with no arguments and loads
    the state_dict given as --serialized-file: an eager model, which `torch.compile` can compile.
    Introduced in 03b_batching_and_model_management.
    """
    path = Path(folder) / f"{model_class.__name__.lower()}.py"
    path.write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(model_class))
    return path


def write_index_to_name(mapping: dict[str, str], folder: Path) -> Path:
    """Write the class-index -> name file that TorchServe's BaseHandler loads as self.mapping.

    Introduced in 01_torchserve_architecture.
    """
    if not all(isinstance(k, str) and k.isdigit() for k in mapping):
        raise ValueError(f"index_to_name keys must be strings of class indices like '0', got {list(mapping)}")
    path = Path(folder) / "index_to_name.json"
    path.write_text(json.dumps(mapping, indent=2))
    return path


def archive_command(model_name: str, serialized_file: Path, handler: Path, export_path: Path,
                    extra_files: Sequence[Path] = (), version: str = "1.0",
                    config_file: Path | None = None) -> list[str]:
    """The torch-model-archiver command line for these files (nothing is run).

    Internal helper: no lesson calls it.
    """
    command = ["torch-model-archiver", "--model-name", model_name, "--version", version,
               "--serialized-file", str(serialized_file), "--handler", str(handler),
               "--export-path", str(export_path), "--force"]
    if extra_files:
        command += ["--extra-files", ",".join(str(f) for f in extra_files)]
    if config_file is not None:
        command += ["--config-file", str(config_file)]
    return command


def archive_model(model_name: str, serialized_file: Path, handler: Path, export_path: Path,
                  extra_files: Sequence[Path] = (), version: str = "1.0",
                  config_file: Path | None = None) -> Archive:
    """Run the real torch-model-archiver and return the .mar path with the command used.

    Every input file is checked first, so a typo gives a clear message instead of
    the archiver's traceback. Introduced in 01_torchserve_architecture.
    """
    for label, path in [("serialized_file", serialized_file), ("handler", handler),
                        *[("extra file", f) for f in extra_files],
                        *([("config_file", config_file)] if config_file else [])]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{label} {path} does not exist; write it before archiving")
    if "," in "".join(str(f) for f in extra_files):
        raise ValueError("extra file paths must not contain commas (the archiver splits on them)")
    export_path = Path(export_path)
    export_path.mkdir(parents=True, exist_ok=True)
    command = archive_command(model_name, serialized_file, handler, export_path, extra_files, version, config_file)
    result = subprocess.run([tool(command[0]), *command[1:]], capture_output=True, text=True, env=tool_env())
    if result.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed (exit {result.returncode}):\n"
                           f"{result.stderr.strip() or result.stdout.strip()}\ncommand: {shlex.join(command)}")
    return Archive(export_path / f"{model_name}.mar", command)


def archive_contents(mar: Path) -> tuple[list[str], dict[str, Any]]:
    """List the files inside a .mar (a zip file) and return its MANIFEST.json.

    Introduced in 03a_archiving_and_configuration.
    """
    with zipfile.ZipFile(mar) as archive:
        names = sorted(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    return names, manifest


@dataclass(frozen=True)
class LocalResponse:
    """What a handler answered for one request when run in-process."""

    status: int
    body: Any
    message: str


def run_handler_locally(handler: Path, serialized_file: Path, requests: Sequence[Any],
                        extra_files: Sequence[Path] = (), content_type: str = "application/json",
                        model_yaml_config: dict | None = None) -> list[LocalResponse]:
    """Load a handler the way a TorchServe worker does and send it one batch of requests.

    Each request is the body as the worker would see it (bytes, str, or already-
    parsed JSON); `model_yaml_config` is what the archive's model-config.yaml would hold.
    Exceptions are NOT caught: a bug shows its real traceback here, with
    your handler's own file, line and code (a note under the traceback names the line),
    where in a server you would only see "Worker died" or HTTP 503.

    Introduced in 02_handlers.
    """
    from ts.context import Context, RequestProcessor
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
    import ts

    handler = Path(handler).resolve()
    model_dir = Path(tempfile.mkdtemp(prefix="handler_"))
    # The model folder holds the model and data files. Python files are imported from where
    # they are (so tracebacks show your file, not a copy deleted after the run), and only the
    # ones you would archive, as in a worker.
    archived_code = _ArchivedCode([handler, *[f for f in extra_files if str(f).endswith(".py")]])
    sys.meta_path.insert(0, archived_code)
    # TorchServe's base handler logs "OpenVINO is not enabled" and "Torch TensorRT not enabled"
    # when it is first imported: true of every CPU machine, and noise in front of your own output.
    base_handler_log = logging.getLogger("ts.torch_handler.base_handler")
    level = base_handler_log.level
    base_handler_log.setLevel(logging.ERROR)
    try:
        for path in [serialized_file, *extra_files]:
            if not str(path).endswith(".py"):
                shutil.copy(path, model_dir)
        manifest = {"model": {"modelName": "local", "serializedFile": Path(serialized_file).name,
                              "handler": handler.name, "modelVersion": "1.0"}}
        with _pointing_at(handler):
            instance = _handler_class(importlib.import_module(handler.stem), handler)()
            metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
            metrics.initialize_cache()
            context = Context("local", str(model_dir), manifest, batch_size=len(requests), gpu=None,
                              mms_version="local", metrics=metrics,
                              model_yaml_config=model_yaml_config or {})
            instance.initialize(context)
            context.request_processor = [RequestProcessor({"body": {"content-type": content_type}})
                                         for _ in requests]
            context.request_ids = {i: f"local-{i}" for i in range(len(requests))}
            metrics.request_ids = context.request_ids
            answers = instance.handle([{"body": body} for body in requests], context)
        statuses = [context.get_response_status(i) for i in range(len(requests))]
        return [LocalResponse(code, answer, phrase or "") for (code, phrase), answer in zip(statuses, answers)]
    finally:
        base_handler_log.setLevel(level)
        sys.meta_path.remove(archived_code)
        shutil.rmtree(model_dir, ignore_errors=True)


class _ArchivedCode(importlib.abc.MetaPathFinder):
    """Imports exactly the given .py files by module name, fresh each run, from where they are."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = {Path(f).stem: Path(f).resolve() for f in files}
        for name in self.files:
            sys.modules.pop(name, None)  # re-import edited files instead of a cached copy

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name in self.files:
            loader = _FromSource(name, str(self.files[name]))
            return importlib.util.spec_from_file_location(name, self.files[name], loader=loader)
        return None


class _FromSource(importlib.machinery.SourceFileLoader):
    """Compile from the file's text every time: no __pycache__ that a quick edit could leave stale."""

    def get_code(self, fullname: str) -> Any:
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


@contextlib.contextmanager
def _pointing_at(handler: Path) -> Iterator[None]:
    """Re-raise any exception with a note naming the last line of `handler` it passed through."""
    try:
        yield
    except BaseException as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == handler]
        if frames:
            frame = frames[-1]
            error.add_note(f"--> in your handler {handler.name}, line {frame.lineno}, in {frame.name}: "
                           f"{(frame.line or '').strip()}")
        raise


def _handler_class(module: Any, handler: Path) -> type:
    """The one class a handler module defines (TorchServe's rule)."""
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    if len(classes) != 1:
        raise ValueError(f"{handler.name} must define exactly one class (TorchServe's rule), "
                         f"found {[c.__name__ for c in classes]}; move helpers to functions or another file")
    return classes[0]
