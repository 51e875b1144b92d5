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
    tagged = ("Introduced in", "Course machinery: not used in lessons.")
    missing = [name for name, obj in public_functions()
               if (inspect.isfunction(obj) and not any(tag in (obj.__doc__ or "") for tag in tagged))
               or (inspect.isclass(obj) and not (obj.__doc__ or "").strip())]
    assert not missing, f"add 'Introduced in <lesson>' (or 'Course machinery: ...') to the docstrings of: {missing}"
