"""One file's functions and classes with their metrics, from its tree-sitter tree.

Functions are every named function and method (nested ones too: radon reports closures as
their own units), plus anonymous functions bound to a name outside any function
(`const f = () => {}`). Classes are class bodies, and for Go and Rust the methods grouped by
receiver (`func (t *T) M()`, `impl T { fn m() }`) with the fields of the struct of that name.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

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


def analyze_tree(path: str, lang: str, tree: Tree) -> FileAnalysis:
    """Metrics of every function and class in a parsed file (unknown languages: empty)."""
    result = FileAnalysis(path, lang)
    rules = RULES.get(lang)
    if rules is None:
        return result
    members: dict[int, list[tuple[Node, FunctionMetrics]]] = defaultdict(list)
    class_nodes: dict[int, Node] = {}
    by_receiver: dict[str, list[tuple[Node, FunctionMetrics]]] = defaultdict(list)
    structs: dict[str, tuple[Node, Node, Node | None]] = {}
    # (node, enclosing class node or None, inside a function)
    stack: list[tuple[Node, Node | None, bool]] = [(tree.root_node, None, False)]
    while stack:
        node, owner, in_function = stack.pop()
        kind = node.type
        if kind in rules.classes:
            class_nodes[node.id] = node
            owner, in_function = node, False
        elif _is_unit(node, rules, in_function):
            prefix = _prefix(node, owner, lang)
            metrics = function_metrics(node, lang, rules, prefix)
            result.functions.append(metrics)
            receiver = _receiver(node, lang)
            if receiver:
                by_receiver[receiver].append((node, metrics))
            elif owner is not None and not in_function:
                members[owner.id].append((node, metrics))
            in_function = True
        elif kind in ("type_spec", "struct_item") and lang in ("go", "rust"):
            _remember_struct(node, structs)
        stack.extend((c, owner, in_function) for c in reversed(node.children))
    for key, node in class_nodes.items():
        body = _class_body(node)
        fields = declared_fields(body, lang) if lang != "python" else set()
        result.classes.append(class_metrics(node.child_by_field_name("name"), node, lang, rules,
                                            members.get(key, []), fields))
    for name, methods in by_receiver.items():
        struct_node, name_node, body = structs.get(name, (methods[0][0], None, None))
        result.classes.append(class_metrics(name_node, struct_node, lang, rules, methods,
                                            declared_fields(body, lang)))
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
