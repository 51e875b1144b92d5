"""The one list of pins (pyproject.toml) and environment.yml must agree."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = {}
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement!r} in pyproject.toml is not pinned with =="
        result[name.lower()] = version
    return result


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_every_dependency_is_pinned_and_torch_is_2_13():
    assert pins()["torch"] == "2.13.0"


def test_environment_yml_installs_this_package_and_no_other_pins():
    dependencies = conda_env()["dependencies"]
    pip_section = next(d["pip"] for d in dependencies if isinstance(d, dict))
    assert "-e ." in pip_section, "environment.yml must install the pinned set through `-e .`"
    for line in pip_section:
        if line == "-e .":
            continue
        name, _, version = line.partition("==")
        assert pins().get(name.lower()) == version, (
            f"environment.yml pins {line!r} but pyproject.toml says {name}=={pins().get(name.lower())}")


def test_conda_side_matches_what_the_doctor_requires():
    conda = [d for d in conda_env()["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    assert "openjdk=17" in conda


def test_makefile_installs_the_same_torch_first():
    makefile = (ROOT / "Makefile").read_text()
    assert f"pip install --quiet torch=={pins()['torch']}" in makefile


def test_gpu_extras_are_pinned_and_the_docker_image_installs_them_from_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert extras and all("==" in requirement for requirement in extras), extras
    dockerfile = (ROOT / "docker" / "jupyter" / "Dockerfile").read_text()
    assert '-e ".[gpu]"' in dockerfile
    installs = " ".join(line for line in dockerfile.splitlines() if "pip install" in line)
    assert set(re.findall(r"([A-Za-z0-9_.-]+)==", installs)) == {"torch"}, "pin packages in pyproject.toml, not the Dockerfile"
