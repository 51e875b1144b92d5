"""Stored notebooks: opening and saving one in JupyterLab changes nothing, and what a learner
reads is complete without running or trusting it (no machine paths, no test markers, no
progress bar stuck at 0 %, a current doctor table).

Only the course's own files are judged: the lessons, the solutions, and the exercises that are still
the student copy `release` wrote. An exercise a learner edited, saved by any editor, is theirs."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_server.services.contents.filemanager import FileContentsManager

from course_utils.machinery.notebook_store import KERNELSPEC, as_text, normalized
from course_utils.machinery.release import course_notebooks
from course_utils.paths import REPO_ROOT

NOTEBOOKS = course_notebooks(REPO_ROOT)
IDS = [f"{p.parent.name}/{p.name}" for p in NOTEBOOKS]
# An absolute path of some machine: a home, the temp folder, or this checkout.
MACHINE_PATH = re.compile(r"(?<![\w.~:/-])/(?:home|root|tmp|Users|mnt|private|var/folders)/[^\s'\"]+")


def output_texts(notebook: nbformat.NotebookNode):
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
            texts += [v for v in output.get("data", {}).values() if isinstance(v, str)]
            for text in texts:
                yield index, output, text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_saving_through_jupyterlabs_save_path_is_byte_identical(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    contents = FileContentsManager(root_dir=str(tmp_path))
    contents.save(contents.get(path.name), path.name)
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_metadata_is_what_jupyterlab_writes_and_cells_carry_no_timestamps(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.kernelspec == KERNELSPEC
    assert not any("execution" in cell.metadata for cell in notebook.cells)
    assert as_text(normalized(copy.deepcopy(notebook))) == path.read_text(encoding="utf-8"), (
        f"store it with `python -m course_utils execute {path.relative_to(REPO_ROOT)}`")


def test_the_stored_kernelspec_is_the_installed_kernels():
    spec = KernelSpecManager().get_kernel_spec(KERNELSPEC["name"])
    assert spec.display_name == KERNELSPEC["display_name"] and spec.language == KERNELSPEC["language"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_hold_no_machine_path_no_test_marker_and_no_unfinished_bar(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        assert "NBVAL" not in cell.source, "mark cells with the nbval-ignore-output tag, not a comment"
    for index, output, text in output_texts(notebook):
        where = f"{path.name} cell {index}"
        assert str(REPO_ROOT) not in text and str(Path.home()) + "/" not in text, f"{where}: {text[:200]!r}"
        assert not MACHINE_PATH.search(text), f"{where}: {MACHINE_PATH.search(text).group(0)}"
        assert "\r" not in text.replace("\r\n", "\n"), f"{where}: a stream still holds carriage returns"
        assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), (
            f"{where}: a widget (untrusted notebooks show its first text snapshot); use course_utils.progress")
        for line in text.splitlines():
            if re.search(r"\d+%\|", line):
                assert re.search(r"100%\|.*\| (\d+)/\1 ", line), f"{where}: an unfinished progress bar: {line}"


def test_lesson_00_shows_the_doctor_table_the_doctor_prints_today():
    from course_utils.doctor import all_findings

    notebook = nbformat.read(REPO_ROOT / "notebooks" / "00_setup.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "course_utils doctor" in c.source and c.cell_type == "code")
    stored = "".join(o.get("text", "") for o in cell.outputs)
    stored_checks = [line.split("  ")[0] for line in stored.splitlines()[2:] if line.strip() and "  " in line]
    assert stored_checks == [f.name for f in all_findings()]


@pytest.mark.parametrize("path", sorted(REPO_ROOT.glob("notebooks/*.ipynb")), ids=lambda p: p.stem)
def test_every_lesson_has_check_yourself_prompts_with_answers_and_names_its_exercise(path):
    cells = nbformat.read(path, as_version=4).cells
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    questions = sum(len(re.findall(r"\*\*Check yourself\.\*\*|Predict first", text)) for text in markdown)
    answers = sum(text.count("<summary><b>Check yourself: the answer</b></summary>") for text in markdown)
    assert questions >= 2 and answers >= 2, (questions, answers)
    practice = markdown[0].split("**Practice:**")[-1] if "**Practice:**" in markdown[0] else ""
    links = re.findall(r"\(\.\./exercises/(ex\d\d_\w+)\.ipynb\)", practice)
    assert practice and links, "the lesson's first cell says which exercise practises it (**Practice:** ...)"
    assert all((REPO_ROOT / "exercises" / f"{name}.ipynb").is_file() for name in links), links


def _save_with_json_dumps(path: Path) -> None:
    import json
    path.write_text(json.dumps(json.loads(path.read_text()), indent=1))   # a script; no final newline


def _save_with_nbformat(path: Path) -> None:
    nbformat.write(nbformat.read(path, as_version=4), path)


def _save_like_vscode(path: Path) -> None:
    import json
    path.write_text(json.dumps(json.loads(path.read_text()), indent=1, ensure_ascii=False) + "\n")


def _save_with_jupyterlab(path: Path) -> None:
    contents = FileContentsManager(root_dir=str(path.parent))
    contents.save(contents.get(path.name), path.name)


@pytest.mark.parametrize("save", [_save_with_json_dumps, _save_with_nbformat, _save_like_vscode, _save_with_jupyterlab])
def test_a_learners_edited_exercise_is_never_judged_whatever_saved_it(save, tmp_path):
    for folder in ("notebooks", "solutions", "exercises"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    exercise = tmp_path / "exercises" / "ex08_ab_decision.ipynb"
    notebook = nbformat.read(exercise, as_version=4)
    answer = next(c for c in notebook.cells if "# YOUR CODE HERE" in c.source)
    answer.source = answer.source.replace("raise NotImplementedError()", "return 'B'  # my answer")
    nbformat.write(notebook, exercise)
    save(exercise)
    judged = [p.relative_to(tmp_path).as_posix() for p in course_notebooks(tmp_path)]
    assert "exercises/ex08_ab_decision.ipynb" not in judged
    assert "exercises/ex01_custom_handler.ipynb" in judged and "solutions/ex08_ab_decision.ipynb" in judged
