"""Per-class metrics and PMD's GodClass rule (Lanza & Marinescu, "Object-Oriented Metrics in Practice").

- WMC: the sum of the methods' McCabe complexity.
- ATFD (access to foreign data): distinct attributes of other objects read directly or through
  getters (`x.attr`, `x.getAttr()`, `x.get_attr()`), where `x` is not `self`/`this`.
- TCC (tight class cohesion): the share of method pairs that use at least one common attribute
  of the class. With fewer than two methods it is undefined and the class is never a god class.
Without type information, ATFD counts by attribute name; see docs/smells.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

from tree_sitter import Node

from .metrics import FunctionMetrics
from .rules import LangRules

_GETTER = re.compile(r"^(get|is|has)(_|[A-Z])")


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    start: tuple[int, int]
    end: tuple[int, int]
    name_start: tuple[int, int]
    name_end: tuple[int, int]
    methods: int
    public_methods: int
    attributes: int
    wmc: int
    atfd: int
    tcc: float | None


def _text(node: Node | None) -> str:
    return "" if node is None else node.text.decode("utf-8", "replace")


def _access_parts(node: Node) -> tuple[Node | None, Node | None]:
    obj = node.child_by_field_name("object") or node.child_by_field_name("operand") or \
        node.child_by_field_name("argument")
    attr = node.child_by_field_name("attribute") or node.child_by_field_name("property") or \
        node.child_by_field_name("field")
    return obj, attr


def method_usage(fn: Node, rules: LangRules, fields: set[str]) -> tuple[set[str], set[str], set[str]]:
    """(own attributes used, own attributes assigned, foreign attributes used) by one method."""
    own: set[str] = set()
    assigned: set[str] = set()
    foreign: set[str] = set()
    stack = list(fn.children)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type in rules.field_access:
            obj, attr = _access_parts(node)
            if obj is None or attr is None:
                continue
            name = _text(attr)
            parent = node.parent
            called = parent is not None and parent.type in rules.calls and \
                parent.child_by_field_name("function") is not None and \
                parent.child_by_field_name("function").start_byte == node.start_byte
            if obj.type in rules.self_names or _text(obj) in rules.self_names:
                if not called:
                    own.add(name)
                    if parent is not None and parent.type in ("assignment", "assignment_expression",
                                                              "augmented_assignment") and \
                            parent.child_by_field_name("left") is not None and \
                            parent.child_by_field_name("left").start_byte == node.start_byte:
                        assigned.add(name)
            elif not called or _GETTER.match(name):
                foreign.add(name)
        elif node.type == "method_invocation":  # Java: obj.getX() is a call node, not a field access
            obj, name_node = node.child_by_field_name("object"), node.child_by_field_name("name")
            if obj is not None and obj.type != "this" and _GETTER.match(_text(name_node)):
                foreign.add(_text(name_node))
        elif fields and node.type in ("identifier", "field_identifier") and _text(node) in fields:
            own.add(_text(node))  # Java/C++ fields used without `this.`
    return own, assigned, foreign


def _tcc(usages: list[set[str]]) -> float | None:
    if len(usages) < 2:
        return None
    pairs = list(combinations(usages, 2))
    return sum(1 for a, b in pairs if a & b) / len(pairs)


def _cpp_access(fn: Node) -> bool:
    """C++: the last access label before the member, else the class (private) or struct default."""
    sibling = fn.prev_named_sibling
    while sibling is not None:
        if sibling.type == "access_specifier":
            return sibling.text.strip() == b"public"
        sibling = sibling.prev_named_sibling
    owner = fn.parent.parent if fn.parent is not None else None
    return owner is None or owner.type != "class_specifier"


def _is_public(name: str, fn: Node, lang: str) -> bool:
    if lang == "python":
        return not name.startswith("_")
    if lang == "go":
        return name[:1].isupper()
    if lang == "cpp":
        return _cpp_access(fn)
    head = fn.text[: max(0, fn.child_by_field_name("name").start_byte - fn.start_byte)] \
        if fn.child_by_field_name("name") is not None else b""
    if lang == "rust":
        return b"pub" in head
    return b"private" not in head and b"protected" not in head and not name.startswith("#")


def class_metrics(name_node: Node | None, node: Node, lang: str, rules: LangRules,
                  methods: list[tuple[Node, FunctionMetrics]], fields: set[str],
                  cache: dict | None = None) -> ClassMetrics:
    """Metrics of one class from its method nodes (with their metrics) and declared fields.
    `cache` maps (method text, fields) to its attribute usage, as in `analyze_tree`."""
    usages, foreign, attributes = [], set(), set(fields)
    public = 0
    frozen_fields = frozenset(fields)
    for fn, metrics in methods:
        key = ("usage", fn.text, frozen_fields)
        usage = cache.get(key) if cache is not None else None
        if usage is None:
            usage = method_usage(fn, rules, fields)
            if cache is not None:
                cache[key] = usage
        own, assigned, other = usage
        attributes |= assigned
        foreign |= other
        public += _is_public(metrics.name, fn, lang)
        if metrics.name not in ("__init__", "constructor", "new") and fn.type != "constructor_declaration":
            usages.append(own)
    anchor = name_node or node
    return ClassMetrics(
        name=_text(name_node) or "<anonymous>", start=node.start_point, end=node.end_point,
        name_start=anchor.start_point, name_end=anchor.end_point, methods=len(methods),
        public_methods=public, attributes=len(attributes), wmc=sum(m.cyclomatic for _, m in methods),
        atfd=len(foreign), tcc=_tcc(usages),
    )


def declared_fields(body: Node | None, lang: str) -> set[str]:
    """Fields declared in a class or struct body (Java, JS/TS, C++, Go, Rust, Python class attributes)."""
    names: set[str] = set()
    if body is None:
        return names
    for child in body.named_children:
        kind = child.type
        if kind in ("field_declaration", "public_field_definition", "field_definition"):
            for sub in [child] + list(child.named_children):
                target = sub.child_by_field_name("name") or sub.child_by_field_name("property")
                if sub.type == "variable_declarator" and target is not None:
                    names.add(_text(target))
                elif sub is child and target is not None:
                    names.add(_text(target))
                elif sub.type == "field_identifier" and lang == "cpp":
                    names.add(_text(sub))
    return names
