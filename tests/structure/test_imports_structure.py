"""The package structure: no import cycles anywhere, and the dependency direction
`lsp -> context, engine -> kernels`.

Every module of the four packages is read with `ast`, and every import in it counts: at module
level, inside functions and under `if TYPE_CHECKING:` (a cycle hidden in a function-level import
is still a cycle, it only fails later).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"lsp": "loopls.lsp", "context": "loopls.context", "engine": "loopls.engine", "kernels": "loopls.kernels"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four packages."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            if not all((d / "__init__.py").is_file() for d in path.parents if d.is_relative_to(REPO / folder)):
                continue  # data shipped with the package (the demo's sample project), not a module
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (loopls modules resolved to the most specific module that
    exists; other imports as their top-level distribution name)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(_target(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                full = f"{module}.{alias.name}"
                out.add(full if full in MODULES else _target(module))
    out.discard(name)
    return out


def _target(module: str) -> str:
    if not module.startswith("loopls."):
        return module.split(".")[0]
    parts = module.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root] & graph.keys())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child] & graph.keys()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_sees_every_package_and_function_level_imports():
    assert len(MODULES) > 60
    for package in PACKAGES.values():
        assert package in MODULES
    # a function-level import is seen (the CLI imports its subcommands lazily)
    assert "loopls.lsp.cli.check" in GRAPH["loopls.lsp.cli"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for name, imported in GRAPH.items():
        if name == package or name.startswith(package + "."):
            bad = sorted(m for m in imported if m in forbidden or m.startswith(tuple(f + "." for f in forbidden)))
            if bad:
                out[name] = bad
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("loopls.context", ("torch", "loopls.engine", "loopls.kernels", "loopls.lsp")),
    ("loopls.engine", ("pygls", "lsprotocol", "tree_sitter", "git", "loopls.context", "loopls.lsp")),
    ("loopls.kernels", ("pygls", "lsprotocol", "tree_sitter", "git", "loopls.context", "loopls.lsp", "loopls.engine")),
])
def test_dependency_direction(package: str, forbidden: tuple[str, ...]):
    assert _offenders(package, forbidden) == {}


def test_kernels_import_nothing_of_loopls_but_themselves():
    for name, imported in GRAPH.items():
        if name.startswith("loopls.kernels"):
            assert {m for m in imported if m.startswith("loopls.")} <= {m for m in MODULES if m.startswith("loopls.kernels")}
