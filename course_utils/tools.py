"""Find the course's command-line tools next to the running Python interpreter."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Absolute path of a console tool (torchserve, torch-model-archiver, ...).

    Looks next to the running Python first, so a Jupyter kernel started from the
    course environment works even when that environment is not "activated".

    Introduced in 08_ensembles.
    """
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed in this environment ({sys.executable}); "
                                "run `make setup` (or `pip install -e .`) from the repository root")
    return found


def tool_env(**extra: str) -> dict[str, str]:
    """A copy of os.environ with the interpreter's bin/ first on PATH, plus `extra`.

    Internal helper: no lesson calls it.
    """
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def ensure_tools_on_path() -> str:
    """Put this environment's bin/ first on PATH for `!torchserve ...` shell cells; return it.

    Introduced in 00_setup.
    """
    if os.environ.get("PATH", "").split(os.pathsep)[0] != str(VENV_BIN):
        os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(VENV_BIN)
