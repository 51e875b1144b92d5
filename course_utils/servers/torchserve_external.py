"""Use a TorchServe that runs elsewhere (the GPU docker stack) instead of starting one.

Set these environment variables (the stack's `jupyter` service sets them for you):

* TORCHSERVE_URL             inference API, e.g. http://torchserve:8080
* TORCHSERVE_MANAGEMENT_URL  management API (default: the inference port + 1)
* TORCHSERVE_METRICS_URL     metrics API (default: the inference port + 2)
* TORCHSERVE_GRPC_URL        gRPC inference host:port (default: host:7070)
* TORCHSERVE_GRPC_MANAGEMENT_URL  gRPC management host:port (default: the gRPC inference port + 1)
* TORCHSERVE_KEY_FILE        the server's key_file.json (token authorization stays on)
* TORCHSERVE_MODEL_STORE     the server's model store, a folder this machine can write
* TORCHSERVE_LOG_DIR         the server's log folder, if this machine can read it (optional)
* TORCHSERVE_WORKFLOW_STORE  the server's workflow store (for lessons with workflows)

Then `TorchServe(...).start()` copies every archive of the lesson's model store into the
shared model store (so a later `POST /models?url=<name>.mar` finds it, as on the embedded
server), registers the ones in `models` through the management API (with the lesson's
batching settings), and waits for READY workers;
`stop()` unregisters them and leaves the server running. The external server needs
the model API on and `allowed_urls` limited to its model store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Protocol

import requests

from .lifecycle import address_from_env

TORCHSERVE_URL_ENV = "TORCHSERVE_URL"


class RegistersArchives(Protocol):
    """What these functions need from a server object (a course_utils.servers.torchserve.TorchServe)."""

    external: dict[str, str] | None
    model_store: Path
    workflow_store: Path | None
    settings: Mapping[str, Any]
    management_url: str

    def headers(self, api: str) -> dict[str, str]: ...

    def management_get(self, path: str, timeout_s: float = 10) -> requests.Response: ...

    def archived_models(self) -> list[tuple[str, str, str]]: ...


def external_torchserve() -> dict[str, str] | None:
    """Addresses, key file and model store of the external TorchServe named by TORCHSERVE_URL, or None.

    Internal helper: no lesson calls it.
    """
    address = address_from_env(TORCHSERVE_URL_ENV, "http://localhost:8080", scheme_required=True)
    if address is None:
        return None
    scheme, host, port = address
    url = f"{scheme}://{host}:{port}"
    store = os.environ.get("TORCHSERVE_MODEL_STORE", "").strip()
    if not store or not Path(store).is_dir():
        raise ValueError(f"{TORCHSERVE_URL_ENV} is set, but TORCHSERVE_MODEL_STORE={store!r} is not a folder: set it to "
                         "the external server's model store as this machine sees it (the docker stack mounts work/)")
    grpc = os.environ.get("TORCHSERVE_GRPC_URL", f"{host}:7070").split("://")[-1]
    grpc_host, _, grpc_port = grpc.rpartition(":")
    return {"inference": url,
            "management": os.environ.get("TORCHSERVE_MANAGEMENT_URL", f"{scheme}://{host}:{port + 1}").rstrip("/"),
            "metrics": os.environ.get("TORCHSERVE_METRICS_URL", f"{scheme}://{host}:{port + 2}").rstrip("/"),
            "grpc_inference": grpc,
            "grpc_management": os.environ.get("TORCHSERVE_GRPC_MANAGEMENT_URL", f"{grpc_host}:{int(grpc_port) + 1}"),
            "key_file": os.environ.get("TORCHSERVE_KEY_FILE", "").strip(), "model_store": store,
            "log_dir": os.environ.get("TORCHSERVE_LOG_DIR", "").strip(),
            "workflow_store": os.environ.get("TORCHSERVE_WORKFLOW_STORE", "").strip()}


def register_archives(server: RegistersArchives) -> list[tuple[str, str]]:
    """Mirror the lesson's archives into the external model store, register `server.models`; return (name, version) pairs.

    A version left registered by an earlier run is replaced. Internal helper: no lesson calls it.
    """
    store = Path(server.external["model_store"])
    for archive in server.model_store.glob("*.mar"):
        shutil.copy(archive, store / archive.name)
    if server.workflow_store is not None:
        workflows = Path(server.external["workflow_store"] or "/nonexistent")
        if not workflows.is_dir():
            raise ValueError("this server uses a workflow store, but TORCHSERVE_WORKFLOW_STORE is not a folder: set it "
                             "to the external server's --workflow-store (the docker stack sets it)")
        for archive in Path(server.workflow_store).glob("*.war"):
            shutil.copy(archive, workflows / archive.name)
    registered = []
    for name, version, mar in server.archived_models():
        if server.management_get(f"models/{name}/{version}", timeout_s=30).status_code == 200:
            requests.delete(f"{server.management_url}/models/{name}/{version}", headers=server.headers("management"),
                            timeout=60)
        params = {"url": mar, "initial_workers": 1, "synchronous": "true"}
        if name in server.settings:
            settings = server.settings[name]
            params.update(batch_size=settings.batch_size, max_batch_delay=settings.max_batch_delay_ms,
                          response_timeout=settings.response_timeout_s)
        response = requests.post(f"{server.management_url}/models", params=params,
                                 headers=server.headers("management"), timeout=300)
        if response.status_code != 200:
            raise RuntimeError(f"the external TorchServe refused to register {mar} (HTTP {response.status_code}: "
                               f"{response.text.strip()[:300]}); it needs --enable-model-api and allowed_urls "
                               f"covering its model store {store}")
        registered.append((name, version))
    return registered


def unregister_archives(server: RegistersArchives, registered: list[tuple[str, str]]) -> None:
    """Unregister every version of the registered models, and the lesson's workflows; the server keeps running.

    Internal helper: no lesson calls it.
    """
    paths = []
    for name in dict.fromkeys(name for name, _ in registered):   # every version, also ones the lesson added
        try:
            versions = server.management_get(f"models/{name}/all", timeout_s=60).json()
            paths += [f"models/{name}/{v['modelVersion']}" for v in versions if isinstance(v, dict)]
        except (requests.RequestException, ValueError):
            paths += [f"models/{name}/{version}" for n, version in registered if n == name]
    if server.workflow_store is not None:
        paths += [f"workflows/{archive.stem}" for archive in Path(server.workflow_store).glob("*.war")]
    for _ in range(2):   # TorchServe keeps the default version while others exist: a second pass removes it
        remaining = []
        for path in paths:
            try:
                response = requests.delete(f"{server.management_url}/{path}", headers=server.headers("management"),
                                           timeout=60)
            except requests.RequestException:
                return  # the server is gone already: nothing left to clean up
            if response.status_code not in (200, 404):
                remaining.append(path)
        paths = remaining
