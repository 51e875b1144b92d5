"""One lifecycle for every server the course runs: TorchServe and Triton, started here or elsewhere.

A server either runs here (embedded: this kernel launches the real process on 127.0.0.1 and
free ports) or elsewhere (external: the environment names a server that already runs, such
as the GPU docker stack). `Server` holds what both servers and both places share:

* start(): the server is registered as running, then launched (`_launch`) or attached to
  (`_attach`), then its models are loaded (`_load_models`); if anything fails it is stopped
  again, so a failed start leaves nothing behind. Before a launch the disk must have room;
* readiness, one probe for every server (`_wait_until_answers`): a GET gets HTTP 200 from a
  process that is the server's own (`owns_port()`), and a refused key is named at once;
* a launched server's process group is guarded by the watchdog (`watchdog.py` here),
  so it never outlives this kernel, even after `kill -9`;
* stop() = begin_stop() then wait; `stop_servers()` begins every stop first and then waits,
  so several servers stop in seconds in all, within Jupyter's 2.5 s shutdown grace where they can;
* errors that name their cause: `problem()` tells a dead process or a full disk within
  seconds, during a start and, in Jupyter, after any cell that fails talking to a server;
* `describe()` and `log_tail()`, the same on every server;
* the registry of this kernel's running servers: `running()`, `stop_servers_in()` (registered
  with `paths.before_emptying`, so work_dir() stops the servers of a folder before emptying it)
  and `stop_all()` at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import psutil
import requests

from ..paths import before_emptying
from .ports import wait_until
from .watchdog import guard, release

MIN_FREE_TO_START = 64 * 2**20   # keys, logs, unpacked models
MIN_FREE_RUNNING = 2**20         # below this, a server's next write fails
DISK_FULL_SIGNS = ("No space left on device", "marshal data too short")   # the second: a truncated .pyc
_RUNNING: list["Server"] = []


class Server:
    """What every server shares: start, readiness, stop, health, describe(), log_tail(), and the registry.

    A subclass says how to launch its server here (`_launch`, `_terminate`), how to use one
    that runs elsewhere (`_attach`, `_detach`), what to load (`_load_models`), which
    process and logs are its own (`process`, `_process_alive`, `_logs`), how it was started
    (`_launch_description`) and which folders it writes (`_folders`).
    `external` holds the addresses of a server named in the environment, or None.

    The lessons use TorchServe and TritonServer, which build on it. Internal helper: no lesson calls it.
    """

    kind = "server"
    work_dir: Path
    external: dict[str, str] | None = None
    addresses: dict[str, str]
    process: Any = None                        # the launched process (psutil.Process or Popen), or None
    main_address = ""                          # the key in `addresses` that describe() names
    external_note = ""                         # where an external server's settings and logs are
    process_markers: tuple[str, ...] = ()      # command-line parts that name this server's processes (watchdog)
    _group: int | None = None                  # the launched process group the watchdog guards
    _log_starts: dict[Path, int] | None = None   # log sizes at launch: only newer lines count

    # ----- what a subclass provides --------------------------------------------------
    def _launch(self) -> None:
        raise NotImplementedError

    def _terminate(self) -> Callable[[], None]:
        raise NotImplementedError

    def _attach(self) -> None:
        raise NotImplementedError

    def _detach(self) -> Callable[[], None]:
        raise NotImplementedError

    def _load_models(self) -> None:
        raise NotImplementedError

    def _process_alive(self) -> bool:
        raise NotImplementedError

    def _exit_code(self) -> int | None:
        """The launched process's exit code once it has exited, if known."""
        return None

    def _logs(self) -> list[Path]:
        """This server's log files ([] for an external server whose logs this machine cannot read)."""
        raise NotImplementedError

    def _launch_description(self) -> str:
        raise NotImplementedError

    def _folders(self) -> list[Path]:
        return [self.work_dir]

    # ----- what every server shows --------------------------------------------------------
    def describe(self) -> str:
        """How this server runs: the command it was started with (and its settings), or the external server's address.

        Introduced in 01_torchserve_architecture.
        """
        if self.external:
            return f"using the external {self.kind} at {self.addresses[self.main_address]} ({self.external_note})"
        return self._launch_description()

    def log_tail(self, grep: str = "", lines: int = 40, log: str = "") -> str:
        """The last `lines` lines of this server's logs (only those containing `grep`); `log` names one log file.

        Introduced in 04_triton.
        """
        logs = self._logs()
        if not logs:
            return f"(the external {self.kind} at {self.addresses[self.main_address]}: {self.external_note})"
        chosen = [path for path in logs if path.name == log] if log else logs
        if not chosen:
            raise ValueError(f"{self.kind} has no log named {log!r}; its logs are {[path.name for path in logs]}")
        parts = []
        for path in chosen:
            if path.exists():
                text = [line for line in path.read_text(errors="replace").splitlines() if grep in line][-lines:]
                parts.append(f"--- last lines of {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(no logs in {chosen[0].parent} yet)"

    # ----- start and stop ---------------------------------------------------------------
    def start(self) -> Any:
        """Launch the server here (or attach to the external one), then load its models.

        Any failure stops it again and raises an error that names the cause.
        """
        if any(server is self for server in _RUNNING):
            raise RuntimeError(f"this {self.kind} is already running; call stop() first")
        _RUNNING.append(self)
        _explain_failed_cells()
        try:
            if self.external:
                self._attach()
            else:
                check_free_space(self._folders(), MIN_FREE_TO_START, f"start {self.kind}")
                self.work_dir.mkdir(parents=True, exist_ok=True)
                self._log_starts = {log: _size(log) for log in self._logs()}
                self._launch()
            self._load_models()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (or, for an external one, undo what start() registered) and wait."""
        self.begin_stop()()

    def begin_stop(self) -> Callable[[], None]:
        """Ask the server to stop without waiting; return the call that waits and cleans up."""
        _RUNNING[:] = [server for server in _RUNNING if server is not self]
        if self.external:
            return self._detach()
        group, self._group = self._group, None
        wait = self._terminate()

        def finish() -> None:
            try:
                wait()
            finally:
                if group is not None:
                    release(group)

        return finish

    def _guard(self, process_group: int, **leftovers: Any) -> None:
        """Register the launched process group: the watchdog stops its `process_markers` processes if this kernel dies."""
        self._group = process_group
        guard(process_group, self.process_markers, **leftovers)

    def _wait_until_answers(self, url: str, port: int | None, timeout_s: float, what: str,
                            headers: Mapping[str, str] | None = None) -> None:
        """Readiness, for every server: wait until a GET of `url` gets HTTP 200 from this server's own process.

        While the launched process does not itself hold `port`, an answer is not ours (another
        server that holds the port). A refused key (401/403) is not worth waiting for: it is raised at once.
        """
        def answers() -> bool:
            self.check()
            pid = getattr(self.process, "pid", None)
            if pid is not None and port is not None and not owns_port(pid, port):
                return False
            try:
                response = requests.get(url, headers=dict(headers or {}), timeout=5)
            except requests.RequestException:   # not listening yet, or too busy to answer in time
                return False
            if response.status_code in (401, 403):
                raise PermissionError(f"{self.kind} at {url} refused this key (HTTP {response.status_code}: "
                                      f"{response.text.strip()[:200]}); is the key file the server's own?")
            return response.status_code == 200

        wait_until(answers, timeout_s, what, on_timeout=self.log_tail)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- health -----------------------------------------------------------------------
    def check(self) -> None:
        """Raise at once if this server cannot work: RuntimeError when its process has exited,
        OSError(ENOSPC) when its disk is full (too little free space, or the signs in its logs).
        """
        if self.external:
            return
        if not self._process_alive():
            code = self._exit_code()
            raise RuntimeError(f"{self.kind} (started in {self.work_dir}) is no longer running"
                               f"{'' if code is None else f' (it exited with code {code})'}.\n{self.log_tail()}")
        full = free_space_problem(self._folders(), MIN_FREE_RUNNING, f"run {self.kind}") or self._full_disk_in_logs()
        if full:
            raise OSError(errno.ENOSPC, full)

    def problem(self) -> str:
        """What check() would raise, as text; "" when nothing is known to be wrong."""
        try:
            self.check()
        except (OSError, RuntimeError) as error:
            return str(error)
        return ""

    def _full_disk_in_logs(self) -> str:
        for log in self._logs():
            text = _read_from(log, (self._log_starts or {}).get(log, 0))
            sign = next((sign for sign in DISK_FULL_SIGNS if sign in text), "")
            if sign:
                return (f"{self.kind} could not write to the disk ({sign!r} in {log.name}): free some space, "
                        f"e.g. the work/ folders of lessons you finished, then start it again.\n"
                        f"{free_space_report(self._folders())}")
        return ""


class LoggedProcessServer(Server):
    """A Server launched as one subprocess.Popen that writes one log file, `log_path` (Triton, Prometheus).

    Internal helper: no lesson calls it.
    """

    log_path: Path

    def _process_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _logs(self) -> list[Path]:
        return [] if self.external else [self.log_path]


# ----- the registry of running servers ---------------------------------------------------
def running() -> list[Server]:
    """The servers this Python process started and has not stopped, oldest first.

    Internal helper: no lesson calls it.
    """
    return list(_RUNNING)


def stop_servers(servers: Sequence[Server]) -> None:
    """Stop servers together: ask each to stop first, then wait for all (no threads, so it works at exit).

    Internal helper: no lesson calls it.
    """
    for finish in [server.begin_stop() for server in servers]:
        finish()


def stop_servers_in(folder: Path) -> None:
    """Stop this process's servers whose work folder is `folder` or inside it (before it is emptied).

    Internal helper: no lesson calls it.
    """
    folder = Path(folder).resolve()
    stop_servers([s for s in running() if folder == s.work_dir or folder in s.work_dir.parents])


def stop_all() -> None:
    """Stop every server this Python process started (runs at interpreter exit).

    At kernel exit Jupyter allows 2.5 s before SIGTERM; whatever still runs then is the watchdog's.
    Internal helper: no lesson calls it.
    """
    stop_servers(running())


atexit.register(stop_all)
before_emptying(stop_servers_in)   # work_dir(clean=True) never deletes the folder of a live server


# ----- processes ------------------------------------------------------------------------------
def children_of(pid: int) -> list[psutil.Process]:
    """A process's descendants (TorchServe's workers, Triton's stubs), or [] once it is gone.

    Internal helper: no lesson calls it.
    """
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def owns_port(pid: int, port: int) -> bool:
    """True when process `pid` itself holds the listening socket of `port`.

    A readiness check that only asks "does something answer?" would accept another
    server that happens to hold the port.

    Internal helper: no lesson calls it.
    """
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets)


def ask_to_stop(process: subprocess.Popen, grace_s: float) -> Callable[[], None]:
    """Send `process` SIGTERM (if it still runs) without waiting; return the call that waits up to `grace_s`
    for it to exit, then kills it.

    Internal helper: no lesson calls it.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)

    def finish() -> None:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    return finish


def end_processes(processes: Iterable[psutil.Process], timeout_s: float) -> None:
    """Wait up to `timeout_s` for processes to exit after being asked to, then kill what is left.

    Internal helper: no lesson calls it.
    """
    _, alive = psutil.wait_procs(list(processes), timeout=timeout_s)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)


# ----- the disk ---------------------------------------------------------------------------------
def free_space_problem(folders: Iterable[Path], need_bytes: int, to_do: str) -> str:
    """One line per folder whose disk has less than `need_bytes` free, or "" when all have room.

    Internal helper: no lesson calls it.
    """
    short = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        free = _free_bytes(folder)
        if free is not None and free < need_bytes:
            short.append(f"the disk of {folder} has {free / 2**20:.1f} MiB free; to {to_do} it needs "
                         f"{need_bytes / 2**20:.0f} MiB")
    if not short:
        return ""
    return ("; ".join(short) + ". Free some space (e.g. delete the work/ folders of lessons you finished, "
            "or run `df -h` to find what is full), then try again.")


def check_free_space(folders: Iterable[Path], need_bytes: int, to_do: str) -> None:
    """Raise OSError(ENOSPC) naming the folder when its disk has less than `need_bytes` free.

    Internal helper: no lesson calls it.
    """
    problem = free_space_problem(folders, need_bytes, to_do)
    if problem:
        raise OSError(errno.ENOSPC, problem)


def free_space_report(folders: Iterable[Path]) -> str:
    """'<folder>: N MiB free' for each folder.

    Internal helper: no lesson calls it.
    """
    return "; ".join(f"{folder}: {(_free_bytes(folder) or 0) / 2**20:.1f} MiB free"
                     for folder in dict.fromkeys(Path(f) for f in folders))


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk of `folder` (or of its nearest existing parent), None if unknown."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int, most: int = 65536) -> str:
    """What was written to `path` after `offset` (at most the last `most` bytes)."""
    size = _size(path)
    offset = offset if offset <= size else 0   # the file was truncated (a server restarted): read it anew
    try:
        with open(path, "rb") as file:
            file.seek(max(offset, size - most))
            return file.read().decode(errors="replace")
    except OSError:
        return ""


# ----- the environment -------------------------------------------------------------------------
def address_from_env(variable: str, example: str, scheme_required: bool) -> tuple[str, str, int] | None:
    """(scheme, host, port) of the address in environment variable `variable`, or None when it is unset.

    Raises ValueError quoting `example` when the value is not [scheme://]host:port.
    Internal helper: no lesson calls it.
    """
    value = os.environ.get(variable, "").strip().rstrip("/")
    if not value:
        return None
    scheme, _, host_port = value.rpartition("://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit() or (scheme_required and scheme not in ("http", "https")):
        raise ValueError(f"{variable}={value!r} is not {'http://' if scheme_required else ''}host:port; "
                         f"set it like {variable}={example}")
    return scheme or "http", host, int(port)


# ----- errors in Jupyter ---------------------------------------------------------------------
def _explain_failed_cells() -> None:
    """In IPython: after a cell fails with a connection-type error, name the course server that is down and why.

    A dead server shows up in your code as a bare ConnectionError (requests) or
    InferenceServerException (tritonclient); this adds one note below the traceback.
    """
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is None or shell.custom_exceptions not in ((), _CONNECTION_ERRORS()):
        return   # not IPython, or someone else's handler: leave it alone
    shell.set_custom_exc(_CONNECTION_ERRORS(), _show_with_server_problems)


def _CONNECTION_ERRORS() -> tuple[type[BaseException], ...]:   # noqa: N802 - a constant, built late
    try:
        from tritonclient.utils import InferenceServerException
    except ImportError:
        return (OSError,)
    return (OSError, InferenceServerException)


def _show_with_server_problems(shell: Any, etype: type, value: BaseException, tb: Any,
                               tb_offset: int | None = None) -> None:
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    problems = [problem for problem in (server.problem() for server in running()) if problem]
    if problems:
        print("\n".join(f"\n[course_utils] Probable cause: {problem}" for problem in problems), file=sys.stderr)
