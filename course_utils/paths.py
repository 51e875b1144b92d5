"""Where the course keeps its files: the repository root and per-notebook work folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
HANDLERS_DIR = PACKAGE_DIR / "handlers"
RESOURCES_DIR = PACKAGE_DIR / "resources"


def work_root() -> Path:
    """Return the folder that holds every notebook's work folder.

    Set the environment variable COURSE_WORK_DIR to put it elsewhere
    (the tests do this so that parallel runs never share files).

    Internal helper: no lesson calls it.
    """
    override = os.environ.get("COURSE_WORK_DIR")
    return Path(override).resolve() if override else REPO_ROOT / "work"


def without_machine_paths(text: str) -> str:
    """`text` with this machine's paths shortened: the course folder becomes relative, your home `~/`.

    Internal helper: no lesson calls it.
    """
    prefixes = [(str(REPO_ROOT) + "/", ""), (str(Path.home()) + "/", "~/")]
    for prefix, shown in sorted(prefixes, key=lambda pair: -len(pair[0])):
        text = text.replace(prefix, shown)
    return text


# A Unix socket's path (sun_path) holds at most 108 bytes including the final NUL.
UNIX_SOCKET_PATH_MAX = 107


def short_temp_dir(prefix: str) -> Path:
    """Create a private (0700) folder with a short path under the system temp folder; return it.

    Servers put their Unix sockets here instead of under work/: a socket path holds at
    most 107 bytes, and a clone under a long path would exceed that. A TMPDIR longer than
    40 characters is passed over for /tmp.

    Internal helper: no lesson calls it.
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir=short_temp_dir_base()))   # created with mode 0700


def short_temp_dir_base() -> Path:
    """The folder short_temp_dir creates folders in: the system temp folder, or /tmp if that is long.

    Internal helper: no lesson calls it.
    """
    base = tempfile.gettempdir()
    if len(base.encode()) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(base).resolve()


def is_short_temp_dir(path: Path, prefix: str) -> bool:
    """True when `path` is a folder short_temp_dir(prefix) would make (safe to delete as ours).

    Internal helper: no lesson calls it.
    """
    path = Path(path)
    return path.name.startswith(prefix) and path.parent == short_temp_dir_base()


def socket_path_problem(folder: Path, name: str) -> str:
    """A one-line reason why a Unix socket `name` cannot live in `folder`, or "" if it can.

    Internal helper: no lesson calls it.
    """
    path = os.path.join(folder, name)
    size = len(path.encode())
    if size <= UNIX_SOCKET_PATH_MAX:
        return ""
    return (f"the socket path {path} is {size} bytes, over the {UNIX_SOCKET_PATH_MAX}-byte limit of "
            "Unix sockets (AF_UNIX path too long); set TMPDIR to a folder with a path of 40 characters or fewer")


def empty_dir(path: Path) -> Path:
    """Delete `path` if it exists and create it again, empty; return it.

    Internal helper: no lesson calls it.
    """
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


OWNER_FILE = ".kernel"   # "PID START_TIME" of the process that uses a work folder


def process_start_ticks(pid: int) -> str | None:
    """A live process's start time in clock ticks since boot (/proc/PID/stat), or None.

    None when the process is gone, is a zombie, or the system has no /proc. Unlike a
    wall-clock start time, it does not move when the clock is adjusted.

    Internal helper: no lesson calls it.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def _other_live_owner(folder: Path) -> int | None:
    """The PID of another live process that owns `folder` (its OWNER_FILE), or None."""
    try:
        pid_text, started = (folder / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and process_start_ticks(pid) == started else None


_BEFORE_EMPTYING: list[Callable[[Path], None]] = []


def before_emptying(hook: Callable[[Path], None]) -> None:
    """Register `hook(folder)` to run before work_dir() empties a folder (the servers' lifecycle stops its servers).

    Internal helper: no lesson calls it.
    """
    if hook not in _BEFORE_EMPTYING:
        _BEFORE_EMPTYING.append(hook)


def work_dir(name: str, clean: bool = True) -> Path:
    """Return (and create) the work folder of one notebook, e.g. work/03_archiving.

    With clean=True (the default) the folder is emptied first, so a rerun of the
    notebook starts from nothing; servers this kernel still runs from it are stopped
    first. Everything under work/ is ignored by git, and work/ and the folder are
    private (mode 0700). A folder in use by another live kernel (the same lesson open
    twice) is refused with a message that names it: two kernels in one folder would
    stop each other's servers.

    Introduced in 00_setup.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"work_dir name must be a plain folder name like '03_archiving', got {name!r}")
    path = work_root() / name
    other = _other_live_owner(path)
    if other is not None:
        raise RuntimeError(f"work/{name} is in use by another running kernel (pid {other}): the same notebook is "
                           "open twice. Shut down the other kernel (Kernel > Shut Down Kernel in its tab, or "
                           "Running Terminals and Kernels in the left bar), then run this cell again.")
    if clean:
        for hook in _BEFORE_EMPTYING:   # servers.lifecycle registers: stop this kernel's servers in `path`
            hook(path)
        empty_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    # Model stores, keys and logs: yours only. A COURSE_WORK_DIR you chose keeps its own mode.
    for folder in (path, *([work_root()] if work_root() == REPO_ROOT / "work" else [])):
        folder.chmod(0o700)
    (path / OWNER_FILE).write_text(f"{os.getpid()} {process_start_ticks(os.getpid())}\n")
    return path


def replace_symlink(link: Path, source: Path) -> Path:
    """Make `link` a symlink to `source` (resolved), replacing a file or link already there.

    Internal helper: no lesson calls it.
    """
    link = Path(link)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)   # a real folder left by an older run
    elif link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(source).resolve())
    return link
