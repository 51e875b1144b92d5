"""Learners read course_utils: every public function says which lesson introduces it."""

import importlib
import inspect
import pkgutil

import course_utils


def public_functions():
    for info in pkgutil.walk_packages(course_utils.__path__, "course_utils."):
        if info.name.startswith("course_utils.handlers") or info.name.endswith("__main__"):
            continue  # handlers are archived files, not library API
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
                yield f"{info.name}.{name}", obj


def test_public_functions_name_their_lesson_and_classes_have_docstrings():
    tagged = ("Introduced in", "Course machinery: not used in lessons.", "Internal helper: no lesson calls it.")
    missing = [name for name, obj in public_functions()
               if (inspect.isfunction(obj) and not any(tag in (obj.__doc__ or "") for tag in tagged))
               or (inspect.isclass(obj) and not (obj.__doc__ or "").strip())]
    assert not missing, (f"add 'Introduced in <lesson>' (or 'Internal helper: ...', or in machinery/ and checks/ "
                         f"'Course machinery: ...') to the docstrings of: {missing}")


def test_every_introduced_in_tag_names_a_notebook_that_uses_the_name():
    """'Introduced in <lesson>' is true: that lesson's (or exercise's) code cells use the function."""
    import json
    import re

    from course_utils.paths import REPO_ROOT

    code = {}
    for notebook in [*(REPO_ROOT / "notebooks").glob("*.ipynb"), *(REPO_ROOT / "solutions").glob("ex*.ipynb")]:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code[notebook.stem] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    named = list(public_functions())
    for qualified, cls in list(named):
        if inspect.isclass(cls):
            for attribute, member in vars(cls).items():
                member = member.fget if isinstance(member, property) else member
                if not attribute.startswith("_") and inspect.isfunction(member):
                    named.append((f"{qualified}.{attribute}", member))
    untrue = []
    for qualified, obj in named:
        tag = re.search(r"Introduced in (\w+)", getattr(obj, "__doc__", None) or "")
        name = qualified.rsplit(".", 1)[1]
        if tag and not re.search(rf"\b{re.escape(name)}\b", code.get(tag.group(1), "")):
            untrue.append(f"{qualified} (tagged {tag.group(1)})")
    assert not untrue, f"these tags name a notebook that never uses the function: {untrue}"
