"""Check KServe InferenceService manifests against the KServe Python SDK's own models.

Run with the interpreter of .venv-kserve (`make kserve`), which has the `kserve` SDK and the Kubernetes client:

    .venv-kserve/bin/python tools/check_inferenceservice.py manifest.yaml [...]

The SDK's models are generated from KServe's OpenAPI schema: each class lists its fields with their types
(`openapi_types`) and their names in YAML (`attribute_map`), and a field's type is another model (KServe's
`V1beta1...`, or the Kubernetes client's `V1...` for containers, resources and metadata), a list or map of
them, or a scalar. This walks every field of every document, top-down, and reports each field the schema does
not have (with the closest name it does have), each value of the wrong type, and each required field the
models' own constructors refuse to go without. It prints one problem per line and exits 1 if there are any.
The SDK is what a practitioner installs without a cluster. It is stricter than the API server in one place:
the Kubernetes client's models take resource quantities as strings only (write `cpu: "2"`, not `cpu: 2`).
"""

from __future__ import annotations

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
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "object": object}
    if type_name in scalars:
        wrong = isinstance(value, bool) and type_name in ("int", "float")
        if wrong or not isinstance(value, scalars[type_name]):
            return [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
        return []
    cls = model_class(type_name)
    if cls is None:
        return [f"{path}: the SDK has no model {type_name}"]
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} (a map), got {type(value).__name__}"]
    return check_object(value, cls, path)


def check_object(value: dict, cls: type, path: str) -> list[str]:
    """Problems of the map `value` as the model `cls`: unknown fields, field types, required fields."""
    by_yaml_name = {yaml_name: python_name for python_name, yaml_name in cls.attribute_map.items()}
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in by_yaml_name:
            lower = {name.lower(): name for name in by_yaml_name}
            close = difflib.get_close_matches(key.lower(), list(lower), n=1)
            problems.append(f"{where}: {cls.__name__} has no field {key!r}"
                            + (f" (did you mean {lower[close[0]]!r}?)" if close else ""))
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
    return check_object(document, kserve.V1beta1InferenceService, "")


def main(paths: list[str]) -> int:
    problems = []
    for path in paths:
        for index, document in enumerate(yaml.safe_load_all(Path(path).read_text())):
            name = (document or {}).get("metadata", {}).get("name", "?") if isinstance(document, dict) else "?"
            problems += [f"{path} [{index}: {name}] {problem}" for problem in check_manifest(document)]
    print("\n".join(problems) if problems else f"ok: {len(paths)} file(s) match KServe's InferenceService schema")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
