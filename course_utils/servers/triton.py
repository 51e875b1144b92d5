"""Start and stop a real Triton Inference Server from a notebook, or use an external one.

Embedded mode (the default): the `tritonserver` 2.51 binary that the PyPI wheel
`nvidia-pytriton` bundles, with its Python backend. What this module does for you:

* a backend folder of symlinks: the python backend plus the stub built for this
  Python version (the wheel keeps stubs for several versions apart);
* PATH starts with this environment's bin/ (the stub's interpreter finds numpy,
  onnxruntime and torch through the `python3` on PATH) and LD_LIBRARY_PATH holds this
  Python's libpython;
* every address on 127.0.0.1 and free ports; `--model-control-mode explicit`;
* the repository you write is served through `serving_copy()`: models whose backend
  this CPU build lacks (onnxruntime, pytorch) run in the Python backend, see
  `course_utils.model_repository.serving_copy`;
* readiness with a timeout whose error quotes the model's load error from the log;
* stop: clients closed, SIGTERM, stub processes and this server's /dev/shm regions gone.

External mode: with TRITON_URL set (the GPU docker stack), nothing is launched and the same
notebook talks to that server: see `triton_external.py` beside this file. Start, stop,
readiness, describe(), log_tail(), the registry of running servers and errors that name their
cause are the same for every server: `lifecycle.py` beside this file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import sysconfig
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil
import requests

from ..paths import replace_symlink
from ..tools import tool_env
from .lifecycle import LoggedProcessServer, ask_to_stop, check_free_space, children_of, end_processes
from .ports import LOCALHOST, free_ports, wait_until
from .triton_external import copy_model_as_written, external_triton
from .triton_serving_copy import serving_copy
# Triton's restricted APIs: these need the header CONTROL_HEADER with this server's key.
CONTROL_HEADER = "triton-control-key"
RESTRICTED_APIS = "model-repository,shared-memory,logging,trace"
SHM_DIR = Path("/dev/shm")
SHM_NEEDED = 8 * 2**20   # a few stubs' shared-memory regions


class ModelLoadError(RuntimeError):
    """Triton refused to load a model; the message holds the server's reason."""


# ----- the bundled server ------------------------------------------------------------
def triton_install_dir() -> Path:
    """The tritonserver folder inside the nvidia-pytriton wheel (bin/, backends/, stubs).

    Internal helper: no lesson calls it.
    """
    try:
        import pytriton
    except ImportError:
        raise FileNotFoundError("nvidia-pytriton is not installed; run `make setup` (or `pip install -e .`) "
                                "from the repository root") from None
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise FileNotFoundError(f"no tritonserver binary under {root}; reinstall nvidia-pytriton==0.7.0")
    return root


def _python_backend_dir(dest: Path) -> Path:
    """Make `dest/python/` a Python backend for this interpreter (symlinks); return `dest`.

    The wheel keeps one `triton_python_backend_stub` per Python version under
    python_backend_stubs/3.X/; Triton looks for it next to libtriton_python.so.
    """
    root = triton_install_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise FileNotFoundError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    backend = Path(dest) / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for source in [*(root / "backends" / "python").glob("*.*"), stub]:
        if source.name == "__pycache__":
            continue
        replace_symlink(backend / source.name, source)
    return Path(dest)


def _triton_env() -> dict[str, str]:
    """Environment for tritonserver: venv bin/ first on PATH, this Python's libpython found."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    previous = os.environ.get("LD_LIBRARY_PATH", "")
    return tool_env(LD_LIBRARY_PATH=os.pathsep.join(p for p in [libdir, previous] if p))


@dataclass(eq=False)
class TritonServer(LoggedProcessServer):
    """A real tritonserver on 127.0.0.1 (or the external server named by TRITON_URL).

    `repository` is the model repository you write (production configs); `models`
    are loaded at start. Use it as a context manager or call start()/stop().

    Introduced in 04_triton.
    """

    repository: Path
    work_dir: Path
    models: Sequence[str] = ()
    startup_timeout_s: float = 120.0
    extra_args: Sequence[str] = ()
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    kind = "Triton"
    main_address = "http"
    process_markers = ("tritonserver", "triton_python_backend_stub")
    external_note = "the GPU docker stack: its command line is in docker/compose.yaml; `docker compose logs triton`"

    def __post_init__(self) -> None:
        self.repository = Path(self.repository).resolve()
        self.work_dir = Path(self.work_dir).resolve()
        if not self.repository.is_dir():
            raise FileNotFoundError(f"model repository {self.repository} does not exist; create it and "
                                    "write a model folder (config.pbtxt + 1/) into it")
        self.external = external_triton(self.repository)   # TRITON_URL set: use that server, start nothing
        self.ports: dict[str, int] = {}
        # host:port of each endpoint: the external server's, or (once launched) our ports.
        self.addresses: dict[str, str] = dict(self.external or {})
        self.adaptations: list[str] = []
        self._shm_prefix = f"course_{uuid.uuid4().hex[:8]}_"
        self._clients: list[Any] = []
        # The key for load/unload, the repository index, logging, trace and shared memory
        # (an external server's comes from TRITON_CONTROL_KEY).
        self.control_key = self.external["control_key"] if self.external else secrets.token_urlsafe(24)

    # ----- addresses (tritonclient takes host:port, no scheme) --------------------------
    @property
    def http_url(self) -> str:
        return self.addresses["http"]

    @property
    def grpc_url(self) -> str:
        return self.addresses["grpc"]

    @property
    def metrics_url(self) -> str:
        return f"http://{self.addresses['metrics']}/metrics"

    @property
    def served_repository(self) -> Path:
        """The folder tritonserver reads: a serving copy of `repository` (embedded), or TRITON_REPOSITORY."""
        return Path(self.addresses.get("repository") or self.work_dir / "served_repository")

    @property
    def log_path(self) -> Path:
        return self.work_dir / "tritonserver.log"

    # ----- the command --------------------------------------------------------------
    def command(self) -> list[str]:
        """The tritonserver command line (embedded mode)."""
        return [
            str(triton_install_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.served_repository}",
            f"--backend-directory={self.work_dir / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--http-address={LOCALHOST}", f"--http-port={self.ports['http']}",
            f"--grpc-address={LOCALHOST}", f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={LOCALHOST}", f"--metrics-port={self.ports['metrics']}",
            "--model-control-mode=explicit",
            f"--http-restricted-api={RESTRICTED_APIS}:{CONTROL_HEADER}={self.control_key}",
            f"--grpc-restricted-protocol={RESTRICTED_APIS}:{CONTROL_HEADER}={self.control_key}",
            "--strict-readiness=true",
            "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    @property
    def command_line(self) -> str:
        """The start command as you would type it (long paths shortened to <...>)."""
        line = shlex.join(self.command())
        return (line.replace(str(triton_install_dir()), "<pytriton>/tritonserver")
                    .replace(str(self.work_dir), "<server dir>").replace(self.control_key or "\0", "<key>"))

    def control_headers(self, grpc: bool = False) -> dict[str, str]:
        """The header that opens Triton's restricted APIs (load/unload, repository index, shared memory, logging, trace).

        Over gRPC, Triton expects the key under the name "triton-grpc-protocol-" + CONTROL_HEADER.
        Introduced in 04_triton.
        """
        if not self.control_key:
            return {}
        return {("triton-grpc-protocol-" if grpc else "") + CONTROL_HEADER: self.control_key}

    def _launch_description(self) -> str:
        return self.command_line.replace(" --", " \\\n    --")

    # ----- lifecycle (start(), stop(), describe() and log_tail() come from lifecycle.Server) -----
    def _attach(self) -> None:
        self._wait_until_live(30, f"the external Triton server at {self.http_url} (TRITON_URL)")

    def _detach(self) -> Callable[[], None]:
        return lambda: None   # the external server keeps running; clients are closed in begin_stop()

    def _load_models(self) -> None:
        """Load self.models side by side: each Python-backend model starts a stub process (about 1.5 s)."""
        for model in self.models:
            self.publish_model(model)
        with ThreadPoolExecutor(max_workers=max(1, min(len(self.models), os.cpu_count() or 1))) as pool:
            for done in [pool.submit(self._request_load, model) for model in self.models]:
                done.result()   # the first model that failed to load raises its ModelLoadError
        self._make_shm_private()

    def _launch(self) -> None:
        if SHM_DIR.is_dir():   # the stubs' shared memory (Docker's default /dev/shm holds 64 MiB in all)
            check_free_space([SHM_DIR], SHM_NEEDED, "start Triton's Python-backend stubs")
        _python_backend_dir(self.work_dir / "backends")
        self._sync_repository()
        names = ["http", "grpc", "metrics"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.addresses = {name: f"{LOCALHOST}:{port}" for name, port in self.ports.items()}
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        with log:   # umask 077: what tritonserver writes is private to you (shm regions: see load())
            self.process = subprocess.Popen(self.command(), env=_triton_env(), cwd=self.work_dir, umask=0o077,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # tritonserver leads its own process group, with its stubs: stopped if this kernel dies.
        self._guard(self.process.pid, shm_prefix=self._shm_prefix)
        self._wait_until_live(self.startup_timeout_s, "tritonserver to answer on HTTP")

    def _sync_repository(self, model: str | None = None, gpu_available: bool = False) -> None:
        new = [n for n in serving_copy(self.repository, self.served_repository, model=model,
                                       gpu_available=gpu_available)
               if n not in self.adaptations]
        self.adaptations += new
        with open(self.work_dir / "adaptations.log", "a") as log:
            log.write("".join(f"{n}\n" for n in new))

    def _wait_until_live(self, timeout_s: float, what: str) -> None:
        """Triton is ready to take load requests once /v2/health/live answers (the base's readiness probe)."""
        self._wait_until_answers(f"http://{self.http_url}/v2/health/live", self.ports.get("http"), timeout_s, what)

    def begin_stop(self) -> Callable[[], None]:
        """Close the clients, then stop as every server does: SIGTERM, then its stubs and shm regions gone."""
        for client in self._clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a client of a dead server may fail to close
                pass
        self._clients.clear()
        return super().begin_stop()

    def _terminate(self) -> Callable[[], None]:
        """Send tritonserver SIGTERM without waiting; return the call that waits for it and its stubs."""
        process, self.process = self.process, None
        if process is None:
            return lambda: None
        children = children_of(process.pid)
        wait_for_tritonserver = ask_to_stop(process, grace_s=20)

        def finish() -> None:
            wait_for_tritonserver()
            end_processes(children, timeout_s=10)
            for region in self.shm_regions():
                region.unlink(missing_ok=True)

        return finish

    def shm_regions(self) -> list[Path]:
        """Shared-memory files this server's Python-backend stubs created in /dev/shm."""
        return sorted(SHM_DIR.glob(f"{self._shm_prefix}*")) if SHM_DIR.is_dir() else []

    def pids(self) -> list[int]:
        """PIDs of tritonserver and its stub processes (to check that stop() cleaned up)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *[c.pid for c in children_of(self.process.pid)]]

    # ----- models ---------------------------------------------------------------------
    def load(self, model: str, timeout_s: float | None = None) -> None:
        """Load (or reload) `model` from the repository and wait until it is ready.

        In embedded mode the model's serving copy is refreshed first, so a new version
        folder or an edited config.pbtxt is picked up. Raises ModelLoadError with
        the server's reason.

        Introduced in 04_triton.
        """
        self.publish_model(model)
        self._request_load(model, timeout_s)
        self._make_shm_private()

    def _request_load(self, model: str, timeout_s: float | None = None) -> None:
        """POST the repository API's load request for `model` and wait for its answer."""
        timeout = timeout_s or self.startup_timeout_s
        try:
            response = requests.post(f"http://{self.http_url}/v2/repository/models/{model}/load", timeout=timeout,
                                     headers=self.control_headers())
        except requests.Timeout:
            self.check()   # a dead server or a full disk, named as such
            raise ModelLoadError(f"loading {model!r} took longer than {timeout:.0f} s (a Python backend stub "
                                 f"that cannot start leaves a model loading forever).\n"
                                 f"{self.log_tail(model)}") from None
        if response.status_code != 200:
            self.check()
            reason = response.json().get("error", response.text)
            raise ModelLoadError(f"Triton could not load {model!r}: {reason}\n{self.log_tail(model)}")

    def _make_shm_private(self) -> None:
        """The stubs create their shared-memory regions 0644, whatever the umask: make them 0600."""
        for region in self.shm_regions():
            with contextlib.suppress(FileNotFoundError):
                region.chmod(0o600)

    def publish_model(self, model: str, gpu_available: bool = False) -> None:
        """Put the model folder you wrote where the server reads it, without loading it.

        Embedded: its serving copy is refreshed (with gpu_available=True, KIND_GPU instance
        groups are kept, so loading fails on a CPU-only server as it would on yours).
        External with TRITON_REPOSITORY: the folder is copied there as written. load() does
        this for you; call it before a raw `POST .../load` request.
        Introduced in 04_triton.
        """
        if not self.external:
            self._sync_repository(model, gpu_available=gpu_available)
            return
        try:
            copy_model_as_written(self.repository, self.served_repository, model)
        except FileNotFoundError as error:
            raise ModelLoadError(str(error)) from None

    def unload(self, model: str) -> None:
        """Unload `model` (explicit model control) and wait until it is no longer ready.

        Lesson 04 shows tritonclient's unload_model instead. Internal helper: no lesson calls it.
        """
        response = requests.post(f"http://{self.http_url}/v2/repository/models/{model}/unload", timeout=30,
                                 headers=self.control_headers())
        if response.status_code != 200:
            raise ModelLoadError(f"Triton could not unload {model!r}: {response.json().get('error', response.text)}")
        wait_until(lambda: not self.is_ready(model), 30, f"{model!r} to unload")

    def stub_processes(self, model: str, version: str = "") -> list[psutil.Process]:
        """The live Python-backend stub processes of `model` (of one version, if given).

        [] for a server this kernel did not start (the docker stack). Introduced in 04_triton.
        """
        return [process for name, number, process in self._stubs() if name == model and version in ("", number)]

    def _stubs(self) -> list[tuple[str, str, psutil.Process]]:
        """(model, version, process) of each live stub, read from its command line (.../<model>/<version>/model.py)."""
        if self.process is None or self.process.poll() is not None:
            return []
        stubs = []
        for child in children_of(self.process.pid):
            try:
                command = child.cmdline() if child.status() != psutil.STATUS_ZOMBIE else []
            except psutil.Error:
                continue
            if command and command[0].endswith("triton_python_backend_stub"):
                folder = Path(command[1]).parent
                stubs.append((folder.parent.name, folder.name, child))
        return stubs

    def dead_stubs(self) -> dict[str, str]:
        """Python-backend models with fewer live stub processes than instances: {model: what to do}.

        tritonserver 2.51 does not restart a stub that died (killed, out of memory): the model
        stays READY and every request routed to that instance fails. {} when all is well.
        Introduced in 04_triton.
        """
        if self.process is None or self.process.poll() is not None:
            return {}
        live: dict[str, int] = {}
        for model, _, _ in self._stubs():
            live[model] = live.get(model, 0) + 1
        base = f"http://{self.http_url}"
        reply = requests.post(f"{base}/v2/repository/index", headers=self.control_headers(), timeout=10)
        if reply.status_code != 200:
            raise RuntimeError(f"Triton refused the repository index ({reply.status_code}): {reply.text}")
        versions: dict[str, int] = {}
        for entry in reply.json():
            if entry.get("state") == "READY":
                versions[entry["name"]] = versions.get(entry["name"], 0) + 1
        problems = {}
        for model, count in versions.items():
            config = requests.get(f"{base}/v2/models/{model}/config", timeout=10).json()
            if config.get("backend") != "python":
                continue
            expected = count * sum(int(group.get("count", 1)) for group in config.get("instance_group", [{}]))
            if live.get(model, 0) < expected:
                problems[model] = (f"{live.get(model, 0)} of {expected} Python-backend stub processes are alive; "
                                   f"requests routed to a dead one fail. Reload the model: server.load({model!r})")
        return problems

    def is_ready(self, model: str, version: str = "") -> bool:
        """True when `model` (a version of it, if given) answers ready.

        Introduced in 04_triton.
        """
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
        return requests.get(f"http://{self.http_url}{path}", timeout=5).status_code == 200

    # ----- clients and logs ---------------------------------------------------------------
    def http_client(self) -> Any:
        """A tritonclient HTTP client for this server, closed for you at stop().

        Introduced in 04_triton.
        """
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url=self.http_url)
        self._clients.append(client)
        return client

    def grpc_client(self) -> Any:
        """A tritonclient gRPC client for this server, closed for you at stop().

        Introduced in 04_triton.
        """
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url=self.grpc_url)
        self._clients.append(client)
        return client
