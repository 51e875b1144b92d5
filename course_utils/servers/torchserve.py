"""Start and stop a real TorchServe safely from a notebook.

What TorchServe server management needs on a shared machine, and what this
module does for you (the lessons show each piece once):

* its own working folder: key_file.json, logs/, and a private TMPDIR (TorchServe keeps
  its pid file and worker sockets there, so two servers never collide). The TMPDIR is a
  short folder such as /tmp/ts-k2j4x9 (work_dir/tmp links to it): a Unix socket path
  holds at most 107 bytes, and a clone under a long path would exceed that;
* every address bound to 127.0.0.1 on free ports (never 0.0.0.0);
* token authorization ON (the default since 0.11): keys are read from
  key_file.json and sent for you with `headers("inference")`/`headers("management")`;
* `allowed_urls` restricted to the model store (the default allows any URL:
  the ShellTorch SSRF, CVE-2023-43654);
* readiness = every model has a READY worker (`/ping` says "Healthy" too early);
* stop with `torchserve --stop`, then make sure java and every worker are gone,
  also when the kernel exits.

With TORCHSERVE_URL set (the GPU docker stack), nothing is started: the archives are
registered on that server instead, see `torchserve_external.py` beside this file. Start, stop,
readiness, describe(), log_tail(), the registry of running servers and errors that name their
cause are the same for every server: `lifecycle.py` beside this file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import psutil
import requests

from ..archiver import archive_contents
from ..paths import REPO_ROOT, RESOURCES_DIR, is_short_temp_dir, replace_symlink, short_temp_dir, socket_path_problem
from ..tools import tool, tool_env
from .lifecycle import Server, end_processes
from .ports import LOCALHOST, free_ports, wait_until
from .torchserve_external import external_torchserve, register_archives, unregister_archives

MAX_REQUEST_BYTES = 1_048_576


@dataclass
class ModelSettings:
    """Per-model settings written to config.properties (`models=`), e.g. server-side batching.

    TorchServe's batcher waits up to `max_batch_delay_ms` for a full batch; it has no "do not wait":
    it reads 0 as its default, 100 ms, so the smallest wait is 1 ms.
    """

    batch_size: int = 1
    max_batch_delay_ms: int = 100
    min_workers: int = 1
    max_workers: int = 1
    response_timeout_s: int = 120

    def __post_init__(self) -> None:
        if self.max_batch_delay_ms < 1:
            raise ValueError(f"max_batch_delay_ms={self.max_batch_delay_ms}: TorchServe reads a delay below 1 ms as "
                             "its default, 100 ms; the smallest wait it honours is max_batch_delay_ms=1")

    def as_config(self, mar_name: str) -> dict[str, Any]:
        return {"marName": mar_name, "minWorkers": self.min_workers, "maxWorkers": self.max_workers,
                "batchSize": self.batch_size, "maxBatchDelay": self.max_batch_delay_ms,
                "responseTimeout": self.response_timeout_s}


@dataclass(eq=False)
class TorchServe(Server):
    """A real TorchServe process with its own folder, free localhost ports and auth keys.

    Use it as a context manager (`with TorchServe(...) as ts:`) or call start()/stop().
    `models` are .mar file names in `model_store` loaded at start; `settings` maps a
    model name to ModelSettings (batching, workers).

    Introduced in 01_torchserve_architecture.
    """

    model_store: Path
    work_dir: Path
    models: Sequence[str] = ()
    settings: Mapping[str, ModelSettings] = field(default_factory=dict)
    token_auth: bool = True
    enable_model_api: bool = False
    workflow_store: Path | None = None
    extra_config: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 120.0
    kind = "TorchServe"
    main_address = "inference"
    process_markers = ("org.pytorch.serve.ModelServer", "model_service_worker")
    external_note = "the GPU docker stack: its settings are in docker/torchserve/config.properties"

    def __post_init__(self) -> None:
        self.model_store = Path(self.model_store).resolve()
        self.work_dir = Path(self.work_dir).resolve()
        if not self.model_store.is_dir():
            raise FileNotFoundError(f"model store {self.model_store} does not exist; create it and archive a model into it")
        for mar in self.models:
            if not (self.model_store / mar).is_file():
                found = sorted(p.name for p in self.model_store.glob("*.mar"))
                raise FileNotFoundError(f"{mar} is not in the model store {self.model_store} (it holds {found}); "
                                        "build it with torch-model-archiver --export-path <model store>")
        self.ports: dict[str, int] = {}
        self.process: psutil.Process | None = None
        self._keys: dict[str, str] = {}
        self.external = external_torchserve()   # TORCHSERVE_URL set: use that server, start nothing
        # Where each API listens: the external server's addresses, or (once launched) our ports.
        self.addresses: dict[str, str] = dict(self.external or {})
        self._registered: list[tuple[str, str]] = []
        self._tmp: Path | None = None   # the short private TMPDIR, created at launch

    # ----- addresses ---------------------------------------------------------------
    @property
    def inference_url(self) -> str:
        return self.addresses["inference"]

    @property
    def management_url(self) -> str:
        return self.addresses["management"]

    @property
    def metrics_url(self) -> str:
        return self.addresses["metrics"]

    @property
    def grpc_inference_target(self) -> str:
        return self.addresses["grpc_inference"]

    @property
    def grpc_management_target(self) -> str:
        return self.addresses["grpc_management"]

    @property
    def config_path(self) -> Path:
        return self.work_dir / "config.properties"

    @property
    def log_dir(self) -> Path:
        """Where the logs are: logs/ in work_dir, or the stack's logs (TORCHSERVE_LOG_DIR, shared through work/)."""
        return Path(self.addresses.get("log_dir") or self.work_dir / "logs")

    @property
    def tmp_dir(self) -> Path:
        """TorchServe's private TMPDIR: its pid file, worker sockets and unpacked models.

        A short folder under the system temp folder (work_dir/tmp links to it), so that
        worker socket paths stay within the 107 bytes a Unix socket allows.
        """
        return self._tmp or (self.work_dir / "tmp").resolve()

    # ----- configuration -----------------------------------------------------------
    def config(self) -> dict[str, str]:
        """The config.properties entries this server starts with, key by key."""
        local = f"http://{LOCALHOST}"
        entries = {
            "inference_address": f"{local}:{self.ports['inference']}",
            "management_address": f"{local}:{self.ports['management']}",
            "metrics_address": f"{local}:{self.ports['metrics']}",
            "grpc_inference_address": LOCALHOST,
            "grpc_inference_port": str(self.ports["grpc_inference"]),
            "grpc_management_address": LOCALHOST,
            "grpc_management_port": str(self.ports["grpc_management"]),
            "initial_worker_port": str(self.ports["workers"]),
            "model_store": str(self.model_store),
            # Only archives from our own model store may be registered (no http(s) URLs).
            "allowed_urls": f"file://{self.model_store}/.*",
            # Bodies over 1 MiB get 413 from the frontend and never reach a worker (default 6.5 MB).
            "max_request_size": str(MAX_REQUEST_BYTES),
            "metrics_mode": "prometheus",
            "disable_system_metrics": "true",
            "default_workers_per_model": "1",
            "install_py_dep_per_model": "false",
            "vmargs": f"-Xmx512m -XX:+UseSerialGC -Dlog4j.configurationFile=file://{RESOURCES_DIR / 'log4j2.xml'}",
        }
        if self.models:
            entries["load_models"] = ",".join(self.models)
        if self.settings:
            entries["models"] = json.dumps(self._models_property())
        if self.workflow_store is not None:
            entries["workflow_store"] = str(Path(self.workflow_store).resolve())
        entries.update(self.extra_config)
        return entries

    def archived_models(self) -> list[tuple[str, str, str]]:
        """(model name, version, .mar file) of each archive in `models`, read from its MANIFEST.json.

        Two archives may hold two versions of one model (`churn_v1.mar`, `churn_v2.mar`
        both named "churn"): TorchServe loads both, and the first is the default.
        """
        identities = []
        for mar in self.models:
            manifest = archive_contents(self.model_store / mar)[1]["model"]
            identities.append((manifest["modelName"], manifest.get("modelVersion", "1.0"), mar))
        return identities

    def _models_property(self) -> dict[str, Any]:
        identities = self.archived_models()
        unknown = set(self.settings) - {name for name, _, _ in identities}
        if unknown:
            raise ValueError(f"settings for {sorted(unknown)} but no such model in models={list(self.models)}; "
                             "settings keys must be model names (--model-name of the archive)")
        properties: dict[str, Any] = {}
        for name, version, mar in identities:
            if name in self.settings:
                properties.setdefault(name, {})[version] = self.settings[name].as_config(mar)
        return properties

    def command(self) -> list[str]:
        """The torchserve command line this server is started with."""
        command = ["torchserve", "--start", "--ncs", "--model-store", str(self.model_store),
                   "--ts-config", str(self.config_path)]
        if self.workflow_store is not None:
            command += ["--workflow-store", str(Path(self.workflow_store).resolve())]
        if not self.token_auth:
            command.append("--disable-token-auth")
        if self.enable_model_api:
            command.append("--enable-model-api")
        return command

    @property
    def command_line(self) -> str:
        """The start command as you would type it in a terminal (run in work_dir)."""
        return shlex.join(self.command())

    def _env(self) -> dict[str, str]:
        tmp = str(self.tmp_dir)
        return tool_env(TMPDIR=tmp, TEMP=tmp, TMP=tmp,
                        LOG_LOCATION=str(self.log_dir), METRICS_LOCATION=str(self.log_dir))

    def _launch_description(self) -> str:
        """The command line and config.properties, with <server dir>, <model store> and <repo> for long paths."""
        text = f"ran: {self.command_line}\n{self.config_path.read_text()}"
        for path, shown in [(self.model_store, "<model store>"), (self.work_dir, "<server dir>"),
                            (REPO_ROOT, "<repo>")]:
            text = text.replace(str(path), shown)
        return text

    # ----- lifecycle (start(), stop(), describe() and log_tail() come from lifecycle.Server) -----
    def _attach(self) -> None:
        """TORCHSERVE_URL: wait for the external server, then register this lesson's archives on it."""
        self._wait_answers()
        self._registered = register_archives(self)

    def _detach(self) -> Callable[[], None]:
        registered, self._registered = self._registered, []
        return lambda: unregister_archives(self, registered)

    def _load_models(self) -> None:
        for name, version, _ in self.archived_models():
            self.wait_model_ready(name, version=version)

    def _wait_answers(self) -> None:
        """Wait for the key file (token auth), then for the management API to answer (the base's readiness probe)."""
        if self.token_auth:
            wait_until(self._read_keys, 60, f"the key file {self.key_file}", on_timeout=self.log_tail)
        self._wait_until_answers(f"{self.management_url}/models", self.ports.get("management"), self.startup_timeout_s,
                                 f"TorchServe at {self.inference_url} to answer", headers=self.headers("management"))

    def _launch(self) -> None:
        """Write config.properties into work_dir and run `torchserve --start` there (it returns at once)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        names = ["inference", "management", "metrics", "grpc_inference", "grpc_management", "workers"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.addresses = {name: f"http://{LOCALHOST}:{port}" for name, port in self.ports.items()}
        self.addresses.update(grpc_inference=f"{LOCALHOST}:{self.ports['grpc_inference']}",
                              grpc_management=f"{LOCALHOST}:{self.ports['grpc_management']}")
        self._tmp = short_temp_dir("ts-")
        replace_symlink(self.work_dir / "tmp", self._tmp)
        # Worker sockets are TMPDIR/.ts.sock.<port>, one port per worker from initial_worker_port.
        problem = socket_path_problem(self._tmp, f".ts.sock.{self.ports['workers'] + 100}")
        if problem:
            raise OSError(f"TorchServe cannot start: {problem}")
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))
        # --start returns at once and leaves java running; its own session keeps it
        # alive when the notebook cell's terminal closes. Output goes to a file:
        # a pipe would make subprocess.run wait for java forever.
        with open(self.log_dir / "launcher.log", "ab") as launcher_log:
            # umask 077: key_file.json, logs and unpacked models are readable by you only.
            subprocess.run([tool("torchserve"), *self.command()[1:]], cwd=self.work_dir, env=self._env(), umask=0o077,
                           stdout=launcher_log, stderr=subprocess.STDOUT, start_new_session=True, check=False)
        self.process = wait_until(self._java_process, 30, "the TorchServe java frontend to start",
                                  on_timeout=self.log_tail)
        # java and its workers share the launcher's process group: stopped if this kernel dies.
        self._guard(os.getpgid(self.process.pid), tmp_dir=self.tmp_dir)
        self._wait_answers()

    @property
    def key_file(self) -> Path:
        """The key_file.json this server wrote (in work_dir; on the docker stack, TORCHSERVE_KEY_FILE)."""
        return Path(self.addresses.get("key_file") or self.work_dir / "key_file.json")

    def _java_process(self) -> psutil.Process | None:
        pid_file = self.tmp_dir / ".model_server.pid"
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        if not pid:
            return None
        try:
            return psutil.Process(int(pid))
        except psutil.NoSuchProcess:
            raise RuntimeError(f"TorchServe exited during start.\n{self.log_tail()}") from None

    def _read_keys(self) -> bool:
        path = self.key_file
        if not path.is_file():
            return False
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False  # still being written
        self._keys = {"inference": data["inference"]["key"], "management": data["management"]["key"],
                      "token": data["API"]["key"]}
        return True

    def _process_alive(self) -> bool:
        try:
            return self.process is not None and self.process.is_running() and self.process.status() != "zombie"
        except psutil.NoSuchProcess:
            return False

    def _logs(self) -> list[Path]:
        if self.external and not self.external["log_dir"]:
            return []   # the stack's logs: `docker compose logs torchserve`
        return [self.log_dir / name for name in ("launcher.log", "ts_log.log", "model_log.log")]

    def _folders(self) -> list[Path]:
        return [self.work_dir, self.tmp_dir]

    def wait_model_ready(self, model: str, timeout_s: float | None = None, version: str | None = None) -> dict:
        """Wait until `model` has at least one worker with status READY; return its description.

        Internal helper: no lesson calls it.
        """
        path = f"models/{model}" + (f"/{version}" if version else "")

        def ready() -> dict | None:
            self.check()
            try:
                response = self.management_get(path)
            except requests.Timeout:  # a busy machine; ask again until the deadline
                return None
            if response.status_code != 200:
                return None
            description = response.json()[0]
            statuses = [w["status"] for w in description.get("workers", [])]
            return description if "READY" in statuses else None

        return wait_until(ready, timeout_s or self.startup_timeout_s, f"a READY worker for model {model!r}",
                          on_timeout=lambda: self.log_tail(log="model_log.log"))

    def _terminate(self) -> Callable[[], None]:
        """Run `torchserve --stop` without waiting; return the call that waits for java and every worker."""
        process, self.process = self.process, None
        if process is None:
            process = self._pid_file_process()
        if process is None:
            return self._remove_tmp
        try:
            children = process.children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        stopper = subprocess.Popen([tool("torchserve"), "--stop"], cwd=self.work_dir, env=self._env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def finish() -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                stopper.wait(timeout=30)
            end_processes([process, *children], timeout_s=20)
            self._remove_tmp()

        return finish

    def _remove_tmp(self) -> None:
        """Delete the short TMPDIR (found through work_dir/tmp after a kernel restart) and the link."""
        link = self.work_dir / "tmp"
        target = self._tmp or (link.resolve() if link.is_symlink() else None)
        if target is not None and is_short_temp_dir(target, "ts-"):
            shutil.rmtree(target, ignore_errors=True)
        if link.is_symlink():
            link.unlink()
        self._tmp = None

    def _pid_file_process(self) -> psutil.Process | None:
        try:
            return self._java_process()
        except RuntimeError:
            return None

    # ----- talking to it -------------------------------------------------------------
    def reload_keys(self) -> None:
        """Re-read key_file.json, e.g. after renewing a key with the token API.

        Introduced in 03a_archiving_and_configuration.
        """
        if not self._read_keys():
            raise FileNotFoundError(f"no readable key file at {self.key_file}; is the server running?")

    def key(self, api: str) -> str:
        """The token for "inference", "management" or "token" (the token API) from key_file.json."""
        if not self.token_auth:
            raise RuntimeError("token authorization is disabled on this server; no keys exist")
        if api not in self._keys:
            raise KeyError(f"unknown API {api!r}; choose 'inference', 'management' or 'token'")
        return self._keys[api]

    def management_get(self, path: str, timeout_s: float = 10) -> requests.Response:
        """GET a management API path (e.g. "models/churn") with this server's management key.

        Internal helper: no lesson calls it.
        """
        return requests.get(f"{self.management_url}/{path}", headers=self.headers("management"), timeout=timeout_s)

    def headers(self, api: str) -> dict[str, str]:
        """HTTP headers that authorize a call to the "inference" or "management" API.

        Introduced in 01_torchserve_architecture.
        """
        return {"Authorization": f"Bearer {self.key(api)}"} if self.token_auth else {}

    def pids(self) -> list[int]:
        """PIDs of java and its worker processes (for checking that stop() cleaned up)."""
        if self.process is None:
            return []
        try:
            return [self.process.pid, *[c.pid for c in self.process.children(recursive=True)]]
        except psutil.NoSuchProcess:
            return []


def wait_for_workers(server: TorchServe, model: str, count: int, timeout_s: float = 60) -> list[dict]:
    """Wait until `model` has exactly `count` workers and all are READY (after a scale call).

    Introduced in 01_torchserve_architecture.
    """
    def settled() -> list[dict] | None:
        workers = server.management_get(f"models/{model}", timeout_s=5).json()[0]["workers"]
        return workers if len(workers) == count and all(w["status"] == "READY" for w in workers) else None

    return wait_until(settled, timeout_s, f"{count} READY workers for {model!r}",
                      on_timeout=lambda: server.log_tail(log="model_log.log"))


def logged_batch_sizes(server: TorchServe, model: str) -> list[int]:
    """Batch sizes the course handlers logged ("batch_size=N") for `model`, oldest first.

    A worker's log lines carry its thread name, e.g. "W-9000-churn_1.0-stdout",
    which tells the models apart. Introduced in 03b_batching_and_model_management.
    """
    path = server.log_dir / "model_log.log"
    if not path.exists():
        return []
    pattern = re.compile(rf"W-\d+-{re.escape(model)}_[0-9.]+-stdout .*batch_size=(\d+)")
    return [int(m.group(1)) for m in map(pattern.search, path.read_text(errors="replace").splitlines()) if m]


def last_worker_error(server: TorchServe) -> str:
    """The last exception line a worker wrote to model_log.log (e.g. "ValueError: ..."), or "".

    Internal helper: no lesson calls it.
    """
    path = server.log_dir / "model_log.log"
    if not path.exists():
        return ""
    pattern = re.compile(r"MODEL_LOG - ((?:[\w.]+\.)?\w*(?:Error|Exception|NotImplemented\w*)\b.*)$")
    errors = [m.group(1) for m in map(pattern.search, path.read_text(errors="replace").splitlines()) if m]
    return errors[-1] if errors else ""
