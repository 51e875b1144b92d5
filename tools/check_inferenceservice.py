"""Check KServe InferenceService manifests against the KServe Python SDK's own models.

Run with the interpreter of .venv-kserve (`make kserve`), which has the `kserve` SDK and the Kubernetes client:

    .venv-kserve/bin/python tools/check_inferenceservice.py manifest.yaml [...]

The SDK's models are generated from KServe's OpenAPI schema: each class lists its fields with their types
(`openapi_types`) and their names in YAML (`attribute_map`), and a field's type is another model (KServe's
`V1beta1...`, or the Kubernetes client's `V1...` for containers, resources and metadata), a list or map of
them, or a scalar. This walks every field of every document, top-down, and reports each field the schema does
not have (with the closest name it does have, or the field under it where the name belongs), each value of the
wrong type, and each required field the models' own constructors refuse to go without. It prints one problem per
line and exits 1 if there are any.

What it does not check: allowed values and ranges (a `scaleMetric` KServe does not know, a
`canaryTrafficPercent` of 150), the rules KServe's admission webhook adds (exactly one model in a predictor),
and Kubernetes' naming rules. A few fields name types the SDK does not ship (for example `deploymentStrategy`):
their contents are not checked, and a note says so. And the SDK is stricter than the API server in one place:
the Kubernetes client's models take resource quantities as strings only (write `cpu: "2"`, not `cpu: 2`).
"""

from __future__ import annotations

import datetime
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import kserve
import kubernetes.client
import yaml

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
           "datetime": (str, datetime.date)}
NOTES: list[str] = []   # fields whose type the SDK does not ship: not checked, said once each


def model_class(name: str) -> type | None:
    """The SDK model called `name`: KServe's, else the Kubernetes client's."""
    return getattr(kserve, name, None) or getattr(kubernetes.client, name, None)


def check(value: Any, type_name: str, path: str) -> list[str]:
    """Problems of `value` as a `type_name` at `path` (e.g. "spec.predictor.model")."""
    if value is None:
        return []
    inner = re.fullmatch(r"(?:list|List)\[(.+)\]", type_name)
    if inner:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check(item, inner.group(1), f"{path}[{i}]")]
    mapping = re.fullmatch(r"(?:dict\(str, |Dict\[str, )(.+)[)\]]", type_name)
    if mapping:
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        return [p for key, item in value.items() for p in check(item, mapping.group(1), f"{path}.{key}")]
    if type_name in SCALARS:
        return _check_scalar(value, type_name, path)
    cls = model_class(type_name)
    if cls is None:
        NOTES.append(f"{path}: not checked (the SDK names its type, {type_name}, but does not ship it)")
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} (a map), got {type(value).__name__}"]
    return check_object(value, cls, path)


def _check_scalar(value: Any, type_name: str, path: str) -> list[str]:
    wrong = isinstance(value, bool) and type_name in ("int", "float")
    if not wrong and isinstance(value, SCALARS[type_name]):
        return []
    quantity = type_name == "str" and isinstance(value, (int, float)) and re.search(r"\.(limits|requests)\.", path)
    return [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"
            + (f" (quote it: \"{value}\")" if quantity else "")]


def _where_it_belongs(key: str, cls: type) -> str:
    """" (it belongs under model)" when a field one level down has `key`; else ""."""
    for python_name, type_name in sorted(cls.openapi_types.items(), key=lambda item: item[0] != "model"):
        child = model_class(type_name)
        if child is not None and key in child.attribute_map.values():
            return f" (it belongs under {cls.attribute_map[python_name]})"
    return ""


def _unknown_field(key: Any, cls: type, yaml_names: list[str]) -> str:
    lower = {name.lower(): name for name in yaml_names}
    close = difflib.get_close_matches(str(key).lower(), list(lower), n=1)
    return (f"{cls.__name__} has no field {key!r}"
            + (_where_it_belongs(str(key), cls) or (f" (did you mean {lower[close[0]]!r}?)" if close else "")))


def check_object(value: dict, cls: type, path: str) -> list[str]:
    """Problems of the map `value` as the model `cls`: unknown fields, field types, required fields."""
    by_yaml_name = {yaml_name: python_name for python_name, yaml_name in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in by_yaml_name:
            problems.append(f"{where}: {_unknown_field(key, cls, list(by_yaml_name))}")
        else:
            problems += check(item, cls.openapi_types[by_yaml_name[key]], where)
    if not problems:
        try:   # the generated constructor refuses a missing required field (client-side validation)
            cls(**{by_yaml_name[key]: item for key, item in value.items()})
        except (ValueError, TypeError) as error:   # the Kubernetes client's models are pydantic models
            lines = [line.strip() for line in str(error).splitlines() if "errors.pydantic.dev" not in line]
            problems.append(f"{path or cls.__name__}: {' '.join(lines)}")
    return problems


def check_manifest(document: Any) -> list[str]:
    """Problems of one YAML document as a KServe v1beta1 InferenceService."""
    if not isinstance(document, dict):
        return [f"expected an InferenceService (a map), got {type(document).__name__}"]
    if (document.get("apiVersion"), document.get("kind")) != (API_VERSION, KIND):
        return [f"apiVersion/kind are {document.get('apiVersion')!r}/{document.get('kind')!r}: "
                f"expected {API_VERSION!r}/{KIND!r}"]
    if "status" in document:
        return ["status: KServe's controller writes it; a manifest you apply leaves it out (kubectl get -o yaml "
                "adds it)"]
    return check_object(document, kserve.V1beta1InferenceService, "")


def check_file(path: str) -> tuple[int, list[str]]:
    """(documents read, problems) of one manifest file."""
    try:
        documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        return 0, [f"{path}: {' '.join(str(error).split())}"]
    if not documents:
        return 0, [f"{path}: no YAML document in it"]
    problems = []
    for index, document in enumerate(documents):
        metadata = document.get("metadata") if isinstance(document, dict) else None
        name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
        problems += [f"{path} [{index}: {name}] {problem}" for problem in check_manifest(document)]
    return len(documents), problems


def main(paths: list[str]) -> int:
    """Check every file; print the problems (or one "ok" line) and the notes; 1 if any problem, 2 if no file."""
    if not paths:
        print("usage: check_inferenceservice.py manifest.yaml [...]")
        return 2
    counted = [check_file(path) for path in paths]
    problems = [problem for _, found in counted for problem in found]
    documents = sum(count for count, _ in counted)
    print("\n".join(problems) if problems else
          f"ok: {documents} InferenceService(s) in {len(paths)} file(s) match KServe's schema")
    print("\n".join(f"note: {note}" for note in dict.fromkeys(NOTES)), end="\n" if NOTES else "")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
