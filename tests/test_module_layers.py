"""The picture of course_utils a maintainer relies on: no import cycle, and each layer imports only downwards.

Layers, bottom to top: the plumbing every module may use (paths, tools, progress, ...); servers/ (the
lifecycle and the servers built on it); the lesson-facing modules; checks/ (graders) and machinery/
(grading, release). An arrow is any import, also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

from course_utils.paths import PACKAGE_DIR


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")
           if "handlers" not in path.parts and "triton_models" not in path.parts}


def imports_of(name: str) -> set[str]:
    """The course_utils modules that module `name` imports (relative imports resolved)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {target for target in found if target in MODULES and target != name}


def layer(name: str) -> int:
    if name.startswith(("course_utils.checks", "course_utils.machinery")) or name == "course_utils.__main__":
        return 3
    if name.startswith("course_utils.servers"):
        return 1
    return 0 if name in PLUMBING else 2


PLUMBING = {"course_utils", "course_utils.paths", "course_utils.tools", "course_utils.progress",
            "course_utils.archiver", "course_utils.triton_config", "course_utils.data"}


def test_there_is_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    visiting, done, cycles = set(), set(), []

    def visit(name: str, trail: list[str]) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(trail[trail.index(name):] + [name])
            return
        visiting.add(name)
        for target in sorted(graph[name]):
            visit(target, trail + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, cycles


def test_each_layer_imports_only_from_the_layers_below_it_or_itself():
    upward = [f"{name} -> {target}" for name in MODULES for target in imports_of(name) if layer(target) > layer(name)]
    assert not upward, f"these imports reach up a layer (module docstring): {upward}"
