"""Show pieces of source files in a lesson (a whole file, one class, or one method)."""

from __future__ import annotations

import ast
from pathlib import Path


def source_of(path: Path, name: str | None = None) -> str:
    """Source text of a file, or of one top-level function/class, or "Class.method" in it.

    Internal helper: no lesson calls it.
    """
    text = Path(path).read_text()
    if name is None:
        return text
    nodes = ast.parse(text).body
    for part in name.split("."):
        match = [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part]
        if not match:
            known = [n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            raise KeyError(f"{part!r} not found in {Path(path).name}; it defines {known}")
        node, nodes = match[0], getattr(match[0], "body", [])
    start = min([node.lineno, *[d.lineno for d in getattr(node, "decorator_list", [])]])
    lines = text.splitlines()[start - 1:node.end_lineno]
    indent = len(lines[0]) - len(lines[0].lstrip())
    return "\n".join(line[indent:] for line in lines)


def show_source(path: Path, name: str | None = None) -> None:
    """Print source_of(path, name) under a one-line header naming the file.

    Introduced in 02_handlers.
    """
    print(f"# --- {Path(path).name}{' :: ' + name if name else ''} ---")
    print(source_of(path, name))
