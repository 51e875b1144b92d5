"""A guard so that no server outlives the Python process (the Jupyter kernel) that started it.

On a normal exit the kernel's atexit hooks stop its servers. A kernel killed with SIGKILL
(a hard restart, the out-of-memory killer) runs no hook at all, and a graceful restart gives
hooks only 2.5 s before Jupyter sends SIGTERM. The servers run in process sessions of their
own (so that closing a cell's terminal does not kill them), and would live on.

So the first server a process starts also starts this watchdog: a small separate process that
checks twice a second whether its kernel is still alive. The kernel keeps a registry file in a
private folder, one entry per running server (its process group, the markers that name its
processes, its shared-memory prefix and temp folder). When the kernel is gone, the watchdog
stops the processes of every registered group whose command line holds one of the server's
markers (java's ModelServer and its workers, tritonserver and its stubs): SIGTERM, then SIGKILL
after 3 s. It removes their shared-memory regions and temp folders, deletes the registry and exits. The first
server of a later kernel also sweeps up after kernels whose watchdog could not run.

Run by guard(), as: python -m course_utils.servers.watchdog KERNEL_PID KERNEL_START_TICKS REGISTRY
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..paths import is_short_temp_dir, process_start_ticks

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = re.compile(r"^course_[0-9a-f]{8}_$")
_watchdog: subprocess.Popen | None = None
_lock = threading.Lock()


def registry_dir() -> Path:
    """This user's private folder of registries (mode 0700), one file per kernel.

    Internal helper: no lesson calls it.
    """
    folder = Path(tempfile.gettempdir()) / f"course-servers-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.is_symlink():
        raise PermissionError(f"{folder} belongs to another user; set TMPDIR to a folder of your own")
    return folder


def registry_path(pid: int | None = None) -> Path:
    """The registry file of a process (default: this one): one entry per running server.

    Internal helper: no lesson calls it.
    """
    return registry_dir() / f"{pid or os.getpid()}.json"


def _read(registry: Path) -> dict[str, dict]:
    try:
        entries = json.loads(registry.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write(registry: Path, entries: dict[str, dict]) -> None:
    handle, fresh = tempfile.mkstemp(dir=registry.parent, prefix=".new-")   # private, and unique per writer
    with os.fdopen(handle, "w") as file:
        json.dump(entries, file)
    os.replace(fresh, registry)


def guard(process_group: int, markers: tuple[str, ...], shm_prefix: str = "", tmp_dir: str | Path = "") -> None:
    """Register a running server to be stopped if this process dies: its process group, and the
    command-line markers that tell its processes apart from anything else in that group.

    Internal helper: no lesson calls it.
    """
    global _watchdog
    if process_start_ticks(os.getpid()) is None:
        return   # no /proc (not Linux): no watchdog; the atexit hooks still stop servers on a normal exit
    with _lock:
        first = _watchdog is None
        if first:
            sweep_orphans()
        registry = registry_path()
        entries = {} if first else _read(registry)   # a new process never inherits a dead one's file
        entries[str(process_group)] = {"markers": list(markers), "shm_prefix": shm_prefix, "tmp_dir": str(tmp_dir)}
        _write(registry, entries)
        if first or _watchdog.poll() is not None:
            _watchdog = subprocess.Popen(
                [sys.executable, "-m", "course_utils.servers.watchdog", str(os.getpid()), str(process_start_ticks(os.getpid())),
                 str(registry)],
                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])


def release(process_group: int) -> None:
    """Forget a server that was stopped normally.

    Internal helper: no lesson calls it.
    """
    with _lock, contextlib.suppress(OSError):   # a full disk: the watchdog finds the group gone later
        registry = registry_path()
        entries = _read(registry)
        if entries.pop(str(process_group), None) is not None:
            _write(registry, entries)


def sweep_orphans() -> list[Path]:
    """Clean up after this user's kernels that died while their watchdog could not run.

    Internal helper: no lesson calls it.
    """
    swept = []
    for registry in registry_dir().glob("*.json"):
        if registry.stem.isdigit() and int(registry.stem) != os.getpid() and process_start_ticks(int(registry.stem)) is None:
            clean_up(registry)
            swept.append(registry)
    return swept


def _server_processes(group: int, markers: list[str]) -> list:
    """The server processes still in a process group: this user's, with one of `markers` in their command line.

    Checking the command line as well as the group means a reused group number never
    gets an unrelated program killed; an entry without markers kills nothing.
    """
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "uids"]):
        try:
            if (os.getpgid(process.pid) == group and process.info["uids"].real == os.getuid()
                    and any(m and m in " ".join(process.info["cmdline"] or []) for m in markers)):
                found.append(process)
        except (ProcessLookupError, psutil.Error, AttributeError):
            continue
    return found


def clean_up(registry: Path) -> None:
    """Stop every server in `registry` and remove what it leaves (the dead kernel's estate).

    Only this user's server processes, the course's shm prefixes and short temp folders
    are touched, whatever the file says.

    Internal helper: no lesson calls it.
    """
    import psutil

    entries = _read(registry)
    servers = [p for group, entry in entries.items() if group.isdigit()
               for p in _server_processes(int(group), [str(m) for m in entry.get("markers", [])])]
    for process in servers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(servers, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=3)
    for entry in entries.values():
        prefix, tmp = str(entry.get("shm_prefix", "")), Path(str(entry.get("tmp_dir", "") or "/"))
        if SHM_PREFIX.match(prefix) and SHM_DIR.is_dir():
            for region in SHM_DIR.glob(f"{prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()
        if is_short_temp_dir(tmp, "ts-"):
            shutil.rmtree(tmp, ignore_errors=True)
    registry.unlink(missing_ok=True)


def _main(kernel_pid: int, kernel_started: str, registry: Path) -> None:
    """Wait for the kernel to die (gone, or its PID reused), then clean up after it."""
    while process_start_ticks(kernel_pid) == kernel_started:
        time.sleep(0.5)
    clean_up(registry)


if __name__ == "__main__":
    _main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
