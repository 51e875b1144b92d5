"""How the course's notebooks are stored, so that opening one in JupyterLab changes nothing.

* notebook metadata is what JupyterLab writes on save: the kernelspec of ipykernel's
  `python3` kernel ("Python 3 (ipykernel)") and the kernel's language_info;
* no per-cell execution timestamps, no saved widget state;
* outputs as a learner sees them: streams with carriage returns applied (a progress bar
  shows its final line), and no path of the machine that ran them (the course folder
  becomes relative, the home folder `~`).

`python -m course_utils execute NOTEBOOK...` runs notebooks and stores them this way;
tests/test_notebook_files.py checks every notebook in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from ..paths import without_machine_paths

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py", "mimetype": "text/x-python",
    "name": "python", "nbconvert_exporter": "python", "pygments_lexer": "ipython3",
    # The course's reference Python. A kernel on another 3.11.x reports its own patch version,
    # which JupyterLab writes into this field on the first save: the one change it can make.
    "version": "3.11.7",
}
_CARRIAGE_RETURN = re.compile(r".*\r(?=[^\n])")   # a line redrawn in place: keep what came last


def _coalesced(outputs: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """Merge consecutive stream outputs of one stream and apply carriage returns, as JupyterLab shows them."""
    merged: list[nbformat.NotebookNode] = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    for output in merged:
        if output.output_type == "stream":
            output.text = _CARRIAGE_RETURN.sub("", output.text)
    return merged


def _normalize_output(output: nbformat.NotebookNode) -> None:
    if output.output_type == "stream":
        output.text = without_machine_paths(output.text)
    elif output.output_type == "error":
        output.traceback = [without_machine_paths(line) for line in output.traceback]
        output.evalue = without_machine_paths(output.evalue)
    elif "data" in output:
        for mime, value in output.data.items():
            if mime.startswith("text/") and isinstance(value, str):
                output.data[mime] = without_machine_paths(value)


def normalized(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as the course stores it (see the module docstring); changes it in place.

    Internal helper: no lesson calls it.
    """
    notebook.metadata.kernelspec = nbformat.from_dict(KERNELSPEC)
    notebook.metadata.language_info = nbformat.from_dict(LANGUAGE_INFO)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _coalesced(cell.outputs)
            for output in cell.outputs:
                _normalize_output(output)
    return notebook


def as_text(notebook: nbformat.NotebookNode) -> str:
    """The exact text JupyterLab's save writes for a notebook (nbformat, one-space indent, final newline).

    Internal helper: no lesson calls it.
    """
    return nbformat.writes(notebook) + "\n"


def write(notebook: nbformat.NotebookNode, path: Path) -> Path:
    """Write a notebook as as_text() renders it.

    Internal helper: no lesson calls it.
    """
    Path(path).write_text(as_text(notebook), encoding="utf-8")
    return Path(path)


def execute_and_store(path: Path, timeout_s: int = 900) -> Path:
    """Run a notebook top to bottom in its own folder and store it with fresh outputs.

    Internal helper: no lesson calls it.
    """
    from nbclient import NotebookClient

    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout_s, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return write(normalized(notebook), path)
