"""One environment everywhere: pyproject.toml's pins, the lock made from them, and every
installer (Makefile, environment.yml, CI, the docker image) installing from that lock.

Nothing here asks a package index: what an index serves changes from day to day, and `make test`
must not. `make lock-check` (course authors, with network) checks the lock against the index."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
DOCKERFILE = ROOT / "docker" / "jupyter" / "Dockerfile"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_pin(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    assert version, f"{requirement!r} in pyproject.toml is not pinned with =="
    return canonical(re.sub(r"\[.*\]", "", name)), version


def pins(table: str = "dependencies") -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project[table] if table == "dependencies" else project["optional-dependencies"][table]
    return dict(split_pin(r) for r in requirements)


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, the names it is required by) from requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line)
        if match:
            current = canonical(match.group(1))
            entries[current] = (match.group(2), [])
            continue
        via = re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9_.-]+)", line)
        if via and current and via.group(1) != "via":
            entries[current][1].append(canonical(via.group(1)))
    return entries


def conda_pip_section() -> list[str]:
    dependencies = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    return next(d["pip"] for d in dependencies if isinstance(d, dict))


# ----- the lock ------------------------------------------------------------------------------
def test_every_direct_dependency_is_in_the_lock_at_its_pinned_version():
    locked = lock_entries()
    for name, version in pins().items():
        assert name in locked, f"{name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert locked[name][0] == version, (
            f"pyproject.toml pins {name}=={version}, requirements.lock has {locked[name][0]}: run `make lock`")


def test_the_lock_holds_nothing_that_pyproject_does_not_require():
    """Every locked package is a direct pin or is required by another locked package."""
    locked = lock_entries()
    direct = set(pins())
    for name, (_, required_by) in locked.items():
        assert required_by, f"{name} in requirements.lock says nothing of why it is there"
        if "course-utils" in required_by:
            assert name in direct, f"the lock says course-utils needs {name}, pyproject.toml does not: run `make lock`"
        assert any(r in locked or r == "course-utils" for r in required_by), (
            f"{name} is only required by {required_by}, which are no longer locked: run `make lock`")


def test_the_lock_is_a_complete_consistent_set_for_pyproject():
    """Offline: every requirement reachable from pyproject.toml, as the installed packages declare it, is met by
    a locked version, and every locked package is reachable. No package index is asked (`make lock-check` asks)."""
    from packaging.requirements import Requirement

    locked = {name: version for name, (version, _) in lock_entries().items()}
    cuda_only = torch_build_extras()
    todo = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    reached: set[str] = set()
    problems = []
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if (name, frozenset(requirement.extras)) in seen or name in cuda_only:
            continue
        seen.add((name, frozenset(requirement.extras)))
        if name not in locked:
            problems.append(f"{requirement} is required but not in requirements.lock")
            continue
        reached.add(name)
        if not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{requirement} is required, the lock has {name}=={locked[name]}")
        extras = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        for line in importlib.metadata.requires(name) or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate(extra) for extra in extras):
                todo.append(needed)
    assert not problems, f"run `make lock`: {problems}"
    assert set(locked) - reached == set(), f"locked but required by nothing: {sorted(set(locked) - reached)}"


def test_the_lock_pins_torch_by_version_not_by_build():
    """`torch==2.13.0` is met by 2.13.0+cpu and by the CUDA builds; a `+cpu` pin would refuse CUDA."""
    assert lock_entries()["torch"][0] == pins()["torch"]
    assert "+" not in lock_entries()["torch"][0]


def torch_build_extras() -> set[str]:
    """What a CUDA build of torch brings beyond the lock (NVIDIA's libraries, triton): its own exact pins."""
    extras, todo = set(), ["torch"]
    while todo:
        for requirement in importlib.metadata.requires(todo.pop()) or []:
            if "extra ==" in requirement:
                continue
            name = canonical(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
            if name not in lock_entries() and name not in extras:
                extras.add(name)
                todo.append(name)
    return extras


def test_what_is_installed_is_exactly_what_the_lock_says():
    """`pip freeze` of this environment is covered by the lock, version by version."""
    locked = lock_entries()
    allowed = {"course-utils", "pip", "setuptools", "wheel"} | torch_build_extras()
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in allowed and name not in locked:
            continue  # the course itself (editable), the venv's installer, a CUDA torch's own libraries
        assert name in locked, f"{name} {dist.version} is installed but not in requirements.lock"
        assert dist.version.split("+")[0] == locked[name][0], (
            f"{name} {dist.version} is installed, the lock says {locked[name][0]}: run `make setup`")


# ----- the installers ---------------------------------------------------------------------------
def make_dry_run(env_extra: dict[str, str] | None = None, *args: str) -> str:
    """The commands `make setup` would run now (-n), as if the lock had just changed (-W)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_BUILD", "MAKEFLAGS", "MAKELEVEL")}
    env.update(env_extra or {})
    done = subprocess.run(["make", "-n", "-W", "requirements.lock", "setup", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pip_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if "pip install" in line]


def tools_only(folder: Path) -> str:
    """A PATH with just the tools the Makefile runs (so no nvidia-smi unless a test puts one there)."""
    folder.mkdir(exist_ok=True)
    for name in ("make", "sh", "sed", "grep", "id", "test"):
        found = shutil.which(name)
        if found and not (folder / name).exists():
            (folder / name).symlink_to(found)
    return str(folder)


def test_make_setup_installs_cpu_torch_from_pytorchs_cpu_index_then_the_lock(tmp_path):
    env = {"PATH": tools_only(tmp_path)}   # no nvidia-smi: a CPU-only machine
    lines = pip_lines(make_dry_run(env))
    assert lines == [
        ".venv/bin/python -m pip install --quiet --index-url https://download.pytorch.org/whl/cpu torch==2.13.0",
        ".venv/bin/python -m pip install --quiet -r requirements.lock",
        ".venv/bin/python -m pip install --quiet --no-deps -e .",
    ]


def test_make_setup_picks_the_cuda_build_where_nvidia_smi_lists_a_gpu(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    lines = pip_lines(make_dry_run({"PATH": tools_only(tmp_path)}))
    assert "--index-url https://download.pytorch.org/whl/cu126 torch==2.13.0" in lines[0]
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\n")
    assert "whl/cpu" in pip_lines(make_dry_run({"PATH": tools_only(tmp_path)}))[0], "a broken driver is no GPU"


def test_one_variable_overrides_the_choice(tmp_path):
    env = {"PATH": tools_only(tmp_path)}
    assert pip_lines(make_dry_run(env, "TORCH_BUILD=pip"))[0] == ".venv/bin/python -m pip install --quiet torch==2.13.0"
    assert "whl/cu126" in pip_lines(make_dry_run({**env, "TORCH_BUILD": "cu126"}))[0]
    done = subprocess.run(["make", "-n", "-W", "requirements.lock", "setup", "TORCH_BUILD=rocm"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "use cpu, cu126 or pip" in done.stdout


def test_ci_installs_from_the_machines_configured_index():
    assert "export TORCH_BUILD=pip" in (ROOT / ".ci" / "run").read_text()


def test_environment_yml_installs_the_lock_with_cpu_torch():
    conda = [d for d in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "openjdk=17" in conda
    assert conda_pip_section() == ["--extra-index-url https://download.pytorch.org/whl/cpu",
                                   "-r requirements.lock", "-e ."]


def test_the_docker_image_installs_cuda_12_torch_the_lock_and_the_gpu_extras():
    dockerfile = DOCKERFILE.read_text()
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126" in dockerfile
    assert '--index-url "${TORCH_INDEX}" torch==2.13.0' in dockerfile
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert '--extra-index-url https://pypi.nvidia.com -e ".[gpu]"' in dockerfile
    installs = " ".join(line for line in dockerfile.splitlines() if "pip install" in line)
    assert set(re.findall(r"([A-Za-z0-9_.-]+)==", installs)) == {"torch"}, "pin packages in pyproject.toml"


def test_the_docker_readme_states_the_minimum_driver():
    text = (ROOT / "docker" / "README.md").read_text()
    assert "560" in text and "cu126" in text
