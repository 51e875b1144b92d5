"""Execute notebooks headlessly and read their printed output (for grading and tests)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient


@dataclass(frozen=True)
class CellResult:
    """One executed code cell: its source and everything it printed."""

    source: str
    text: str
    error: str


def _output_text(cell: nbformat.NotebookNode) -> tuple[str, str]:
    """(printed text, error name and message) of one executed code cell."""
    texts, errors = [], []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            texts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            texts.append(output.get("data", {}).get("text/plain", ""))
        elif output.output_type == "error":
            errors.append(f"{output.ename}: {output.evalue}")
    return "".join(texts), "\n".join(errors)


def execute(path: Path, timeout_s: int = 600, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> list[CellResult]:
    """Run a notebook top to bottom in its own folder (or `cwd`), continuing past errors; return its code cells.

    `timeout_s` limits each cell.

    Internal helper: no lesson calls it.
    """
    notebook = nbformat.read(path, as_version=4)
    previous = dict(os.environ)
    os.environ.update(env or {})
    try:
        with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
            # IPC transport: local socket files instead of TCP ports (and no TCP warning).
            kernel = KernelManager(kernel_name="python3", transport="ipc",
                                   connection_file=str(Path(sockets) / "kernel.json"))
            try:
                NotebookClient(notebook, km=kernel, timeout=timeout_s, allow_errors=True,
                               resources={"metadata": {"path": str(cwd or Path(path).parent)}}).execute()
            finally:
                if kernel.has_kernel:
                    kernel.shutdown_kernel()
    finally:
        os.environ.clear()
        os.environ.update(previous)
    results = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            results.append(CellResult(cell.source, *_output_text(cell)))
    return results


def is_grader_cell(source: str) -> bool:
    """Grader cells start with the comment line `# GRADER`.

    Internal helper: no lesson calls it.
    """
    return source.lstrip().startswith("# GRADER")
