"""A Python file's outline: its definitions and imports, read from the syntax tree that the
corpus filter parses anyway (so every file is parsed once)."""

from __future__ import annotations

import ast
from dataclasses import dataclass

_NESTED = ("body", "orelse", "handlers", "finalbody", "cases")


@dataclass(frozen=True)
class Definition:
    name: str
    start: int  # 0-based, inclusive (decorators included)
    end: int
    container: bool  # a class: the packer shows its head, members are definitions of their own


@dataclass(frozen=True)
class Outline:
    definitions: tuple[Definition, ...]
    imports: tuple[str, ...]  # dotted module names; relative imports resolved against the file


def module_name(path: str) -> str:
    """"pkg/sub/mod.py" -> "pkg.sub.mod"; a package's __init__ is the package itself."""
    mod = path.removesuffix(".pyi").removesuffix(".py").replace("/", ".")
    return mod.removesuffix(".__init__")


def _package_of(path: str) -> str:
    mod = module_name(path)
    return mod if path.endswith(("__init__.py", "__init__.pyi")) else mod.rpartition(".")[0]


def outline_of(tree: ast.Module, path: str) -> Outline:
    """Definitions at any depth and imports, walking statements only (expressions hold neither,
    and skipping them makes this several times faster than ast.walk)."""
    defs: list[Definition] = []
    imports: list[str] = []
    package = _package_of(path)
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            defs.append(Definition(node.name, start, (node.end_lineno or node.lineno) - 1,
                                   isinstance(node, ast.ClassDef)))
        elif isinstance(node, ast.Import):
            imports.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: max(0, len(parts) - (node.level - 1))]
                base = ".".join([*parts, *([base] if base else [])])
            imports.append(base)
            imports.extend(f"{base}.{a.name}" for a in node.names if a.name != "*")
        for name in _NESTED:
            children = getattr(node, name, None)
            if children:
                for child in children:
                    # match cases and except handlers hold their statements one level down
                    stack.extend(child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child])
    defs.sort(key=lambda d: (d.start, d.end, d.name))
    return Outline(tuple(defs), tuple(dict.fromkeys(i for i in imports if i)))
