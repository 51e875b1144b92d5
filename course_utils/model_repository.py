"""Triton model repositories: show the one you wrote.

You write a repository the production way (`platform: "onnxruntime_onnx"`,
`"pytorch_libtorch"`, `KIND_GPU` instance groups), with `course_utils.triton_config`.
The embedded tritonserver serves it through a serving copy
(`course_utils/servers/triton_serving_copy.py`); your repository stays untouched.
"""

from __future__ import annotations

from pathlib import Path


def repository_tree(repository: Path) -> str:
    """The repository as an indented tree (folders end in /), for printing.

    Introduced in 04_triton.
    """
    repository = Path(repository)
    lines = [f"{repository.name}/"]

    def walk(folder: Path, indent: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: (p.is_file(), p.name)):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            lines.append(f"{indent}{entry.name}{'/' if entry.is_dir() else ''}")
            if entry.is_dir():
                walk(entry, indent + "    ")

    walk(repository, "    ")
    return "\n".join(lines)
