"""`python -m course_utils doctor`: is this machine ready for the course?

Standard library only, so it also runs before the course's packages are
installed (the Makefile calls `doctor --prereqs` first).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO_ROOT, short_temp_dir, socket_path_problem, without_machine_paths

REQUIRED, OPTIONAL = "required", "optional"


def _shown(path: str | Path) -> str:
    """A path as the doctor prints it (no path of your machine in a shared screenshot or notebook)."""
    return without_machine_paths(str(path))


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str
    level: str = REQUIRED

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "MISSING" if self.level == REQUIRED else "absent (optional)"


def _run(command: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr) if done.returncode == 0 else None


def _check_python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    return Finding("Python 3.11", sys.version_info[:2] == (3, 11), f"{version} at {_shown(sys.executable)}",
                   "install Python 3.11: `conda env create -f environment.yml`, or `apt install python3.11 python3.11-venv`")


def _check_java() -> Finding:
    java = shutil.which("java")
    output = _run([java, "-version"]) if java else None
    match = re.search(r'version "(\d+)', output or "")
    major = int(match.group(1)) if match else 0
    return Finding("Java >= 17 (TorchServe frontend)", major >= 17,
                   f"java {major} at {_shown(java)}" if java else "java not found on PATH",
                   "`sudo apt-get install -y openjdk-17-jre-headless`, or `conda install -c conda-forge openjdk=17`")


def _check_libpython() -> Finding:
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("LDLIBRARY") or ""
    exists = shared and (Path(libdir) / name).exists()
    return Finding("shared libpython (Triton's Python backend)", exists,
                   _shown(Path(libdir) / name) if exists else "this Python was built without --enable-shared",
                   "use conda's Python (environment.yml), `apt install libpython3.11`, or "
                   "pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared")


def _check_package(dist: str, wanted: str | None = None, level: str = REQUIRED) -> Finding:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return Finding(dist, False, "not installed", "run `make setup` from the repository root", level)
    ok = wanted is None or version.split("+")[0] == wanted
    return Finding(dist + (f" == {wanted}" if wanted else ""), ok, version,
                   f"pip install {dist}=={wanted} (install torch first)" if wanted else "run `make setup`", level)


def _check_gpu() -> Finding:
    output = _run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"])
    return Finding("NVIDIA GPU", output is not None, output.strip() if output else "no nvidia-smi / no GPU",
                   "optional: the GPU docker stack and TensorRT need one; every lesson runs on CPU", OPTIONAL)


def _check_tensorrt() -> Finding:
    try:
        version = importlib.metadata.version("tensorrt")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return Finding("TensorRT", version is not None, version or "not installed",
                   "optional: present in NGC containers (docker stack); TensorRT cells are skipped without it",
                   OPTIONAL)


def _check_docker() -> Finding:
    output = _run(["docker", "info", "--format", "{{.ServerVersion}}"])
    return Finding("Docker engine", output is not None,
                   f"server {output.strip()}" if output else "no running Docker engine",
                   "optional: only the GPU docker-compose stack needs it", OPTIONAL)


def _check_aiperf() -> Finding:
    from course_utils.aiperf import AIPERF

    output = _run([str(AIPERF), "--version"]) if AIPERF.exists() else None
    return Finding("AIPerf (.venv-aiperf)", output is not None, output.strip() if output else "not installed",
                   "optional: `make aiperf` installs it; lesson 16 then measures with it too", OPTIONAL)


def _check_model_analyzer() -> Finding:
    from course_utils.model_analyzer import MODEL_ANALYZER

    quiet_plots = {**os.environ, "MPLBACKEND": "Agg"}   # not a notebook kernel's inline backend
    output = _run([str(MODEL_ANALYZER), "--version"], env=quiet_plots) if MODEL_ANALYZER.exists() else None
    return Finding("Model Analyzer (.venv-model-analyzer)", output is not None,
                   output.strip() if output else "not installed",
                   "optional: `make model-analyzer` installs it; lesson 21 then runs it too", OPTIONAL)


def _check_kserve_sdk() -> Finding:
    venv = REPO_ROOT / ".venv-kserve"
    version = "import importlib.metadata, kserve; print(importlib.metadata.version('kserve'))"
    output = _run([str(venv / "bin" / "python"), "-c", version]) if (venv / ".installed").exists() else None
    return Finding("KServe SDK (.venv-kserve)", output is not None, output.strip() if output else "not installed",
                   "optional: `make kserve` installs it; `make test` then checks kserve/*.yaml against its "
                   "InferenceService schema (lesson 10, ex12)", OPTIONAL)


def _check_prometheus() -> Finding:
    from course_utils.servers.prometheus import INSTALL_HINT

    binary = shutil.which("prometheus")
    output = _run([binary, "--version"]) if binary and shutil.which("promtool") else None
    return Finding("Prometheus + promtool", output is not None,
                   re.search(r"version (\S+)", output).group(1) if output else "not installed",
                   f"{INSTALL_HINT}. Lesson 22, ex11, ex12 and `make test` (the alert-rule tests) need it; the other "
                   "lessons run without it")


def _check_loopback_port() -> Finding:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return Finding("free ports on 127.0.0.1", True, f"e.g. {port}", "")
    except OSError as err:
        return Finding("free ports on 127.0.0.1", False, str(err), "check the loopback interface (`ip addr show lo`)")


def _check_socket_paths() -> Finding:
    """Servers keep Unix sockets in a short temp folder: is there one whose paths fit in 107 bytes?"""
    folder = short_temp_dir("doctor-")
    try:
        problem = socket_path_problem(folder, ".ts.sock.65535")
    finally:
        folder.rmdir()
    return Finding("short temp folder for server sockets", not problem,
                   problem or f"{Path(folder).parent} (socket paths within 107 bytes)",
                   "set TMPDIR to a short folder such as /tmp before `make lab`")


def _check_cxx() -> Finding:
    """torch.compile and AOTInductor write C++ for the CPU and need a compiler to build it (lessons 03, 07)."""
    candidates = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    compiler = next(filter(None, (shutil.which(c) for c in candidates if c)), None)
    version = _run([compiler, "--version"]) if compiler else None
    return Finding("C++ compiler (torch.compile, AOTInductor)", version is not None,
                   version.splitlines()[0] if version else "no g++, clang++ or c++ on PATH",
                   "`sudo apt-get install -y g++`, or `conda install -c conda-forge gxx`")


def _check_disk(minimum_gb: float = 5.0) -> Finding:
    free_gb = shutil.disk_usage(Path(__file__).resolve().parent).free / 1e9
    return Finding(f"free disk >= {minimum_gb:.0f} GB", free_gb >= minimum_gb, f"{free_gb:.1f} GB free",
                   "free some space: model stores and logs live under work/")


def prerequisite_findings() -> list[Finding]:
    """What must exist before `make setup` can install the course (Python, Java, libpython).

    Internal helper: no lesson calls it.
    """
    return [_check_python(), _check_java(), _check_libpython()]


def all_findings() -> list[Finding]:
    """Every check of the doctor's table.

    Introduced in 00_setup.
    """
    return [*prerequisite_findings(),
            _check_package("torch", "2.13.0"), _check_package("torchserve", "0.12.0"),
            _check_package("torch-model-archiver", "0.12.0"), _check_package("onnxruntime"),
            _check_package("nvidia-pytriton", "0.7.0"), _check_package("tritonclient", "2.51.0"),
            _check_cxx(), _check_loopback_port(), _check_socket_paths(), _check_disk(),
            _check_gpu(), _check_tensorrt(), _check_docker(), _check_prometheus(), _check_aiperf(), _check_model_analyzer(),
            _check_kserve_sdk()]


def format_table(findings: list[Finding]) -> str:
    """Render findings as a fixed-width text table with a fix column for failures.

    Internal helper: no lesson calls it.
    """
    rows = [("check", "status", "detail", "how to fix")]
    rows += [(f.name, f.status, f.detail, "" if f.ok else f.fix) for f in findings]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * min(120, max(len(line) for line in lines)))
    return "\n".join(lines)


def main(prereqs_only: bool = False) -> int:
    """Print the table; exit status 1 when a required check fails.

    Internal helper: no lesson calls it.
    """
    findings = prerequisite_findings() if prereqs_only else all_findings()
    print(format_table(findings))
    print()
    print(verdict(findings, prereqs_only))
    return 1 if any(not f.ok and f.level == REQUIRED for f in findings) else 0


def verdict(findings: list[Finding], prereqs_only: bool = False) -> str:
    """The doctor's last words: ready or not, and the one next step.

    Internal helper: no lesson calls it.
    """
    missing = [f.name for f in findings if not f.ok and f.level == REQUIRED]
    if missing:
        return (f"NOT READY: {len(missing)} required check(s) failed ({', '.join(missing)}). "
                "Apply 'how to fix' above, then run this check again.")
    if prereqs_only:
        return "Prerequisites ready: installing the course's packages next."
    return ("READY for every lesson. Next: lesson 00, notebooks/00_setup.ipynb (`make lab` opens it), "
            "then the lessons in order.")
