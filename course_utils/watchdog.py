"""A guard so that no server outlives the Python process (the Jupyter kernel) that started it.

On a normal exit the kernel's atexit hooks stop its servers. A kernel killed with SIGKILL
(a hard restart, the out-of-memory killer) runs no hook at all, and a graceful restart gives
hooks only 2.5 s before Jupyter sends SIGTERM. The servers run in process sessions of their
own (so that closing a cell's terminal does not kill them), and would live on.

So the first server a process starts also starts this watchdog: a small separate process that
checks twice a second whether its kernel is still alive. The kernel keeps a registry file,
one entry per running server (its process group, shared-memory prefix, temp folder). When the
kernel is gone, the watchdog stops the server processes (java, workers, tritonserver, stubs) of
every registered process group (SIGTERM, then SIGKILL after 3 s), removes their shared-memory regions
and temp folders, deletes the registry and exits. The first server of a later kernel also sweeps up
after kernels whose watchdog could not run.

Run by guard(), as: python -m course_utils.watchdog KERNEL_PID KERNEL_START_TIME REGISTRY
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHM_DIR = Path("/dev/shm")
_watchdog: subprocess.Popen | None = None


def registry_path(pid: int | None = None) -> Path:
    """The registry file of a process (default: this one): one entry per running server.

    Course machinery: not used in lessons.
    """
    return Path(tempfile.gettempdir()) / f"course-servers-{pid or os.getpid()}.json"


def _read(registry: Path) -> dict[str, dict]:
    try:
        return json.loads(registry.read_text())
    except (OSError, ValueError):
        return {}


def sweep_orphans() -> list[Path]:
    """Clean up after kernels that died while their watchdog could not (a reboot, a killed watchdog).

    Course machinery: not used in lessons.
    """
    swept = []
    for registry in Path(tempfile.gettempdir()).glob("course-servers-*.json"):
        pid = int(registry.stem.rsplit("-", 1)[1])
        if pid != os.getpid() and not _pid_exists(pid):
            clean_up(registry)
            swept.append(registry)
    return swept


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive, and not ours to judge
        return True


def _write(registry: Path, entries: dict[str, dict]) -> None:
    fresh = registry.with_suffix(".tmp")
    fresh.write_text(json.dumps(entries))
    fresh.chmod(0o600)
    fresh.replace(registry)


def guard(process_group: int, shm_prefix: str = "", tmp_dir: str | Path = "") -> None:
    """Register a running server (its process group) to be stopped if this process dies.

    Course machinery: not used in lessons.
    """
    global _watchdog
    if _watchdog is None:
        sweep_orphans()
    registry = registry_path()
    entries = _read(registry)
    entries[str(process_group)] = {"shm_prefix": shm_prefix, "tmp_dir": str(tmp_dir)}
    _write(registry, entries)
    if _watchdog is None or _watchdog.poll() is not None:
        import psutil

        started = psutil.Process().create_time()
        _watchdog = subprocess.Popen(
            [sys.executable, "-m", "course_utils.watchdog", str(os.getpid()), repr(started), str(registry)],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])


def stop_in_parallel(servers: list) -> None:
    """Stop servers at the same time (each stop waits seconds for its process): at kernel exit,
    Jupyter allows 2.5 s before SIGTERM, and anything still running then is the watchdog's.

    Course machinery: not used in lessons.
    """
    if servers:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.stop(), servers))


def release(process_group: int) -> None:
    """Forget a server that was stopped normally.

    Course machinery: not used in lessons.
    """
    registry = registry_path()
    entries = _read(registry)
    if entries.pop(str(process_group), None) is not None:
        _write(registry, entries)


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


SERVER_MARKERS = ("org.pytorch.serve.ModelServer", "model_service_worker", "tritonserver",
                  "triton_python_backend_stub")


def _server_processes(group: int) -> list:
    """The server processes (java, workers, tritonserver, stubs) still in a process group.

    Checking the command line as well as the group means a reused group number never
    gets an unrelated program killed.
    """
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if (os.getpgid(process.pid) == group
                    and any(m in " ".join(process.info["cmdline"] or []) for m in SERVER_MARKERS)):
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def clean_up(registry: Path) -> None:
    """Stop every server in `registry` and remove what it leaves (the dead kernel's estate).

    Course machinery: not used in lessons.
    """
    import psutil

    entries = _read(registry)
    servers = [p for group in map(int, entries) for p in _server_processes(group)]
    for process in servers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(servers, timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=3)
    for entry in entries.values():
        if entry.get("shm_prefix") and SHM_DIR.is_dir():
            for region in SHM_DIR.glob(f"{entry['shm_prefix']}*"):
                region.unlink(missing_ok=True)
        if entry.get("tmp_dir"):
            shutil.rmtree(entry["tmp_dir"], ignore_errors=True)
    registry.unlink(missing_ok=True)


def _main(kernel_pid: int, kernel_started: float, registry: Path) -> None:
    """Wait for the kernel to die, then clean up after it."""
    while _alive(kernel_pid, kernel_started):
        time.sleep(0.5)
    clean_up(registry)


if __name__ == "__main__":
    _main(int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3]))
