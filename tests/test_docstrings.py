"""Learners read course_utils: every public function says which lesson introduces it."""

import importlib
import inspect
import json
import pkgutil
import re

import course_utils
from course_utils.paths import PACKAGE_DIR, REPO_ROOT


def public_functions():
    for info in pkgutil.walk_packages(course_utils.__path__, "course_utils."):
        if info.name.startswith("course_utils.handlers") or info.name.endswith("__main__"):
            continue  # handlers are archived files, not library API
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
                yield f"{info.name}.{name}", obj


INTERNAL = "Internal helper: no lesson calls it."


def test_public_functions_name_their_lesson_and_classes_have_docstrings():
    tagged = ("Introduced in", INTERNAL)
    missing = [name for name, obj in public_functions()
               if (inspect.isfunction(obj) and not any(tag in (obj.__doc__ or "") for tag in tagged))
               or (inspect.isclass(obj) and not (obj.__doc__ or "").strip())]
    assert not missing, f"end the docstrings of these with 'Introduced in <lesson>' or {INTERNAL!r}: {missing}"


def test_one_phrase_says_a_function_is_not_for_lessons():
    other = re.compile(r"(Course machinery|Internal helper|not used in lessons|no lesson calls)(?!: no lesson calls it\.)")
    found = [f"{path.relative_to(PACKAGE_DIR)}:{number}" for path in sorted(PACKAGE_DIR.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if other.search(line) and INTERNAL not in line]
    assert not found, f"write {INTERNAL!r} (the one phrase) instead, in: {found}"


def notebooks_in_course_order() -> dict[str, str]:
    """Notebook stem -> its code, lessons first (00, 01, 02, 03a, 03b, ...), then the exercises."""
    lessons = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    exercises = sorted((REPO_ROOT / "solutions").glob("ex*.ipynb"))
    code = {}
    for notebook in [*lessons, *exercises]:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code[notebook.stem] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return code


def test_every_introduced_in_tag_names_the_first_notebook_that_uses_the_name():
    """'Introduced in <lesson>' is true: that notebook uses the name, and (for functions and classes) none before it."""
    code = notebooks_in_course_order()
    order = list(code)
    named = [(qualified, obj, False) for qualified, obj in public_functions()]
    for qualified, cls, _ in list(named):
        if inspect.isclass(cls):
            for attribute, member in vars(cls).items():
                member = member.fget if isinstance(member, property) else member
                if not attribute.startswith("_") and inspect.isfunction(member):
                    named.append((f"{qualified}.{attribute}", member, True))
    untrue = []
    for qualified, obj, is_method in named:
        tag = re.search(r"Introduced in (\w+)", getattr(obj, "__doc__", None) or "")
        if not tag:
            continue
        name = qualified.rsplit(".", 1)[1]
        # A method is used as `.name`, a function by its name (not a keyword argument `name=`). A method name
        # (load, stop) is too common to find its first use by text, and a grader belongs to its own exercise.
        pattern = rf"\.{re.escape(name)}\b" if is_method else rf"\b{re.escape(name)}\b(?!\s*=[^=])"
        users = [stem for stem in order if re.search(pattern, code[stem])]
        first_use_counts = not is_method and not qualified.startswith("course_utils.checks.")
        if tag.group(1) not in users:
            untrue.append(f"{qualified} (tagged {tag.group(1)}, which never uses it)")
        elif first_use_counts and users[0] != tag.group(1):
            untrue.append(f"{qualified} (tagged {tag.group(1)}, first used in {users[0]})")
    assert not untrue, f"these 'Introduced in' tags are not true: {untrue}"


def test_no_lesson_calls_a_function_tagged_internal():
    """The other direction: 'Internal helper: no lesson calls it.' is true, no notebook calls the function."""
    code = notebooks_in_course_order()
    called = [f"{qualified} (called in {stem})" for qualified, obj in public_functions()
              if inspect.isfunction(obj) and INTERNAL in (obj.__doc__ or "")
              and not qualified.startswith("course_utils.machinery.")   # never imported by lessons (layers)
              for stem, text in code.items()
              if re.search(rf"(?<![\w.]){re.escape(qualified.rsplit('.', 1)[1])}\(", text)
              or re.search(rf"import[^\n]*\b{re.escape(qualified.rsplit('.', 1)[1])}\b", text)]
    assert not called, f"these are tagged {INTERNAL!r} but a notebook calls them: {called}"
