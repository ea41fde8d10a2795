"""One file's functions and classes with their metrics, from its tree-sitter tree.

Functions are every named function and method (nested ones too: radon reports closures as
their own units), plus anonymous functions bound to a name outside any function
(`const f = () => {}`). Classes are class bodies, and for Go and Rust the methods grouped by
receiver (`func (t *T) M()`, `impl T { fn m() }`) with the fields of the struct of that name.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from dataclasses import dataclass, field

from tree_sitter import Language, Node, Query, Tree

from ..languages import captures_in_slices
from .classes import ClassMetrics, class_metrics, declared_fields
from .metrics import FunctionMetrics, function_metrics
from .rules import RULES, LangRules

_BOUND_LAMBDA_PARENTS = frozenset({"variable_declarator", "pair", "assignment_expression",
                                   "public_field_definition", "field_definition"})


@dataclass
class FileAnalysis:
    path: str
    lang: str
    functions: list[FunctionMetrics] = field(default_factory=list)
    classes: list[ClassMetrics] = field(default_factory=list)


@dataclass
class FileState:
    """What the checks keep of one file: its source, metrics and run-time imports."""

    path: str
    lang: str
    source: bytes
    analysis: FileAnalysis
    edges: dict[str, int]  # imported repository file -> 0-based row of the import
    version: int = -1  # the project's version of the file this was computed from


def _class_body(node: Node) -> Node | None:
    return node.child_by_field_name("body")


def _go_receiver(fn: Node) -> str | None:
    receiver = fn.child_by_field_name("receiver")
    if receiver is None:
        return None
    for node in _descendants(receiver):
        if node.type == "type_identifier":
            return node.text.decode("utf-8", "replace")
    return None


def _descendants(node: Node):
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(reversed(cur.children))


@functools.cache
def _units_query(lang: str, rules: LangRules, language: Language) -> Query:
    # compiled once per grammar: a query is immutable
    kinds = rules.functions | rules.lambdas | rules.classes | {"type_spec", "struct_item"}
    present = sorted(k for k in kinds if language.id_for_node_kind(k, True))
    return Query(language, "[" + " ".join(f"({k})" for k in present) + "] @unit")


def _context(node: Node, rules: LangRules) -> tuple[Node | None, bool]:
    """(nearest enclosing class, whether the nearest function-or-class around it is a function)."""
    owner, in_function, decided = None, False, False
    parent = node.parent
    while parent is not None:
        kind = parent.type
        if kind in rules.classes:
            owner = owner or parent
            decided = True
        elif not decided and (kind in rules.functions or kind in rules.lambdas):
            in_function, decided = True, True
        if owner is not None:
            break
        parent = parent.parent
    return owner, in_function


def _rebased(metrics: FunctionMetrics, node: Node) -> FunctionMetrics:
    shift = node.start_point[0] - metrics.start[0]
    if shift == 0:
        return metrics
    move = (lambda p: (p[0] + shift, p[1]))
    return dataclasses.replace(metrics, start=move(metrics.start), end=move(metrics.end),
                               name_start=move(metrics.name_start), name_end=move(metrics.name_end))


def analyze_tree(path: str, lang: str, tree: Tree, cache: dict | None = None) -> FileAnalysis:
    """Metrics of every function and class in a parsed file (unknown languages: empty).

    `cache` (any dict the caller keeps) maps a function's text to its metrics, so that
    re-analysing an edited file only walks the functions whose text changed.
    """
    result = FileAnalysis(path, lang)
    rules = RULES.get(lang)
    if rules is None:
        return result
    members: dict[int, list[tuple[Node, FunctionMetrics]]] = defaultdict(list)
    class_nodes: dict[int, Node] = {}
    by_receiver: dict[str, list[tuple[Node, FunctionMetrics]]] = defaultdict(list)
    structs: dict[str, tuple[Node, Node, Node | None]] = {}
    query = _units_query(lang, rules, tree.language)
    nodes = sorted(captures_in_slices(query, tree.root_node).get("unit", []), key=lambda n: n.start_byte)
    for node in nodes:
        kind = node.type
        if kind in rules.classes:
            class_nodes[node.id] = node
            continue
        if kind in ("type_spec", "struct_item") and lang in ("go", "rust"):
            _remember_struct(node, structs)
            continue
        owner, in_function = _context(node, rules)
        if not _is_unit(node, rules, in_function):
            continue
        prefix = _prefix(node, owner, lang)
        key = (node.text, prefix, node.start_point[1])
        metrics = cache.get(key) if cache is not None else None
        if metrics is None:
            metrics = function_metrics(node, lang, rules, prefix)
            if cache is not None:
                cache[key] = metrics
        metrics = _rebased(metrics, node)
        result.functions.append(metrics)
        receiver = _receiver(node, lang)
        if receiver:
            by_receiver[receiver].append((node, metrics))
        elif owner is not None and not in_function:
            members[owner.id].append((node, metrics))
    for key, node in class_nodes.items():
        body = _class_body(node)
        fields = declared_fields(body, lang) if lang != "python" else set()
        result.classes.append(class_metrics(node.child_by_field_name("name"), node, lang, rules,
                                            members.get(key, []), fields, cache))
    for name, methods in by_receiver.items():
        struct_node, name_node, body = structs.get(name, (methods[0][0], None, None))
        result.classes.append(class_metrics(name_node, struct_node, lang, rules, methods,
                                            declared_fields(body, lang), cache))
    result.functions.sort(key=lambda m: m.start)
    result.classes.sort(key=lambda c: c.start)
    return result


def _is_unit(node: Node, rules: LangRules, in_function: bool) -> bool:
    if node.type in rules.functions:
        return node.child_by_field_name("body") is not None
    if node.type in rules.lambdas and not in_function:
        return node.parent is not None and node.parent.type in _BOUND_LAMBDA_PARENTS
    return False


def _prefix(node: Node, owner: Node | None, lang: str) -> str:
    if lang == "go":
        receiver = _go_receiver(node)
        return f"{receiver}." if receiver else ""
    if lang == "rust":
        impl = _enclosing_impl(node)
        return f"{impl}::" if impl else ""
    if owner is not None:
        name = owner.child_by_field_name("name")
        return f"{name.text.decode('utf-8', 'replace')}." if name is not None else ""
    return ""


def _enclosing_impl(node: Node) -> str | None:
    parent = node.parent
    while parent is not None:
        if parent.type == "impl_item":
            type_node = parent.child_by_field_name("type")
            return type_node.text.decode("utf-8", "replace") if type_node is not None else None
        if parent.type == "function_item":
            return None
        parent = parent.parent
    return None


def _receiver(node: Node, lang: str) -> str | None:
    if lang == "go":
        return _go_receiver(node)
    if lang == "rust":
        return _enclosing_impl(node)
    return None


def _remember_struct(node: Node, structs: dict[str, tuple[Node, Node, Node | None]]) -> None:
    name = node.child_by_field_name("name")
    if name is None:
        return
    if node.type == "type_spec":
        type_node = node.child_by_field_name("type")
        if type_node is None or type_node.type != "struct_type":
            return
        body = next((c for c in type_node.named_children if c.type == "field_declaration_list"), None)
    else:
        body = node.child_by_field_name("body")
    structs[name.text.decode("utf-8", "replace")] = (node, name, body)
