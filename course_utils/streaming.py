"""Serve the course's language model from both servers, and read what they stream.

* `write_zen_model()` writes a Triton model folder: config.pbtxt (decoupled), model.py (the course's
  triton_models/zen_generate.py), the model's code (language_model.py), weights and tokenizer;
* `archive_zen()` builds the TorchServe archive of the same model with the streaming handler;
* `sse_events()` reads Triton's `generate_stream` answer (server-sent events) one event at a time;
* `zen_grpc_inputs()` builds a streaming request's inputs for tritonclient's gRPC client.

The lessons show the HTTP, gRPC and archiver calls themselves; this module is the plumbing around them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import requests

from . import language_model
from .archiver import Archive, archive_model, handler_file
from .models import weights_file
from .paths import PACKAGE_DIR

ZEN_MODEL = PACKAGE_DIR / "triton_models" / "zen_generate.py"
ZEN_WEIGHTS = ("zen_lm", 0, 300)   # name, seed, steps of the shipped model the servers serve

ZEN_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "text_input", data_type: TYPE_STRING, dims: [ 1 ] }},
  {{ name: "max_tokens", data_type: TYPE_INT32, dims: [ 1 ], optional: true }},
  {{ name: "temperature", data_type: TYPE_FP32, dims: [ 1 ], optional: true }},
  {{ name: "seed", data_type: TYPE_INT32, dims: [ 1 ], optional: true }},
  {{ name: "ignore_eos", data_type: TYPE_BOOL, dims: [ 1 ], optional: true }}
]
output [ {{ name: "text_output", data_type: TYPE_STRING, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{batching}{parameters}"""

# How the model's requests are scheduled (lesson 15): max_batch_size, the scheduler block, model.py's parameters.
BATCHING = {
    "none": (0, "", {}),                                             # one request at a time
    "static": (8, "dynamic_batching { }\n", {}),                     # a batch decodes until its last is done
    "continuous": (0, "", {"scheduler": "continuous"}),              # a loop in model.py refills slots each step
    "iterative": (8, "sequence_batching {\n  iterative_sequence: true\n  oldest { max_candidate_sequences: 8 }\n}\n",
                  {}),                                               # Triton re-forms the batch each step
}


def zen_config(name: str = "zen", parameters: Mapping[str, object] | None = None, batching: str = "none") -> str:
    """The config.pbtxt text of a streaming (decoupled) language-model model, with model.py's parameters.

    `batching` is "none" (one request at a time), "static" (a dynamic batcher: the requests of a
    batch decode together until the last is done), "continuous" (model.py's own loop: waiting requests
    join between any two steps) or "iterative" (Triton's iterative sequence batcher does that).
    Internal helper: no lesson calls it.
    """
    if batching not in BATCHING:
        raise ValueError(f"batching={batching!r}: use one of {sorted(BATCHING)}")
    max_batch_size, scheduler, own_parameters = BATCHING[batching]
    lines = [f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
             for key, value in {**own_parameters, **(parameters or {})}.items()]
    return ZEN_CONFIG.format(name=name, max_batch_size=max_batch_size, batching=scheduler,
                             parameters="\n".join(lines) + ("\n" if lines else ""))


def write_zen_model(repository: Path, name: str = "zen", parameters: Mapping[str, object] | None = None,
                    model_file: Path = ZEN_MODEL, batching: str = "none") -> Path:
    """Write the model folder `repository/name`: config.pbtxt and version 1 (model.py and what it loads).

    `model_file` is the model.py to serve (the course's, unless an exercise gives its own); `batching`
    is how Triton schedules it (zen_config).
    Introduced in 14_streaming.
    """
    folder = Path(repository) / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(zen_config(name, parameters, batching))
    shutil.copy(model_file, version / "model.py")
    _copy_model_files(version, weights_name="zen_lm.pt")
    return folder


def _copy_model_files(folder: Path, weights_name: str) -> list[Path]:
    """The model's code, weights and tokenizer, copied into `folder`; returns the three paths."""
    copies = [(Path(language_model.__file__), "language_model.py"), (weights_file(*ZEN_WEIGHTS), weights_name),
              (language_model.TOKENIZER_FILE, "tokenizer.json")]
    for source, target in copies:
        shutil.copy(source, folder / target)
    return [folder / target for _, target in copies]


def archive_zen(store: Path, files: Path, name: str = "zen", handler_settings: Mapping[str, object] | None = None,
                settings: Mapping[str, object] | None = None, handler: str = "zen_stream_handler") -> Archive:
    """Archive the language model for TorchServe with a handler of the course (the real torch-model-archiver).

    `files` is a folder for what goes into the archive; `handler_settings` become model-config.yaml's
    `handler:` section (max_prompt_tokens, max_tokens_limit, step_delay_ms), `settings` its top level
    (e.g. batchSize, continuousBatching); `handler` is zen_stream_handler (lesson 14) or
    zen_openai_handler (lesson 16). Introduced in 14_streaming.
    """
    files = Path(files)
    files.mkdir(parents=True, exist_ok=True)
    code, weights, tokenizer = _copy_model_files(files, weights_name="zen_lm.pt")
    config = {**(settings or {}), "handler": dict(handler_settings or {})}
    (files / "model-config.yaml").write_text(json.dumps(config, indent=2))   # JSON is YAML
    return archive_model(name, weights, handler_file(handler), store,
                         extra_files=[code, tokenizer, handler_file("batch_safe")],
                         config_file=files / "model-config.yaml")


def sse_events(response: requests.Response) -> Iterator[dict]:
    """The JSON of each `data:` line of a server-sent-events answer (Triton's generate_stream), as it arrives.

    Introduced in 14_streaming.
    """
    for line in response.iter_lines():
        if line.startswith(b"data:"):
            yield json.loads(line[len(b"data:"):])


GRPC_TYPES = {"max_tokens": (np.int32, "INT32"), "temperature": (np.float32, "FP32"), "seed": (np.int32, "INT32"),
              "ignore_eos": (np.bool_, "BOOL")}


def zen_grpc_inputs(prompt: bytes, **options: object) -> list:
    """A streaming request's inputs as tritonclient gRPC InferInput objects: the prompt (BYTES) and any options.

    Introduced in 14_streaming.
    """
    import tritonclient.grpc as grpcclient

    arrays = [("text_input", np.array([prompt], dtype=np.object_), "BYTES")]
    arrays += [(name, np.array([value], dtype=GRPC_TYPES[name][0]), GRPC_TYPES[name][1]) for name, value in options.items()]
    inputs = []
    for name, array, datatype in arrays:
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs
