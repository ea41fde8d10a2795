"""What the refactors need to know about expressions, per language: which nodes are
expressions, which can run code (calls, awaits, assignments inside expressions), which are
atoms that never need parentheses, and fresh names that clash with nothing in the file."""

from __future__ import annotations

import keyword
import re

from tree_sitter import Node

from .pyscope import BUILTIN_NAMES
from .source import Source

PY_EXPRESSIONS = frozenset({
    "call", "attribute", "subscript", "binary_operator", "boolean_operator", "comparison_operator",
    "not_operator", "unary_operator", "conditional_expression", "lambda", "list", "tuple", "dictionary", "set",
    "list_comprehension", "set_comprehension", "dictionary_comprehension", "generator_expression",
    "parenthesized_expression", "string", "concatenated_string", "integer", "float", "true", "false", "none",
    "await", "identifier",
})
JS_EXPRESSIONS = frozenset({
    "call_expression", "member_expression", "subscript_expression", "binary_expression", "unary_expression",
    "ternary_expression", "arrow_function", "function_expression", "function", "object", "array", "template_string",
    "string", "number", "true", "false", "null", "undefined", "new_expression", "parenthesized_expression",
    "await_expression", "as_expression", "satisfies_expression", "non_null_expression", "regex", "identifier",
    "this", "jsx_element", "jsx_self_closing_element",
})
# Nodes that can run arbitrary code or rebind names while an expression is evaluated.
PY_EFFECTS = frozenset({"call", "await", "yield", "named_expression"})
JS_EFFECTS = frozenset({"call_expression", "new_expression", "await_expression", "yield_expression",
                        "assignment_expression", "augmented_assignment_expression", "update_expression",
                        "tagged_template_expression"})
# Nodes that may read state an earlier call changed (beyond plain names and literals).
PY_STATEFUL = PY_EFFECTS | {"attribute", "subscript"}
JS_STATEFUL = JS_EFFECTS | {"member_expression", "subscript_expression"}
# Scopes whose body is not evaluated where it is written.
PY_DEFERRED = frozenset({"lambda", "function_definition", "class_definition"})
JS_DEFERRED = frozenset({"arrow_function", "function_expression", "function", "function_declaration",
                         "method_definition", "generator_function", "generator_function_declaration", "class",
                         "class_declaration"})
PY_ATOMS = frozenset({"identifier", "call", "attribute", "subscript", "list", "tuple", "dictionary", "set",
                      "list_comprehension", "set_comprehension", "dictionary_comprehension",
                      "parenthesized_expression", "string", "concatenated_string", "integer", "float", "true",
                      "false", "none"})
JS_ATOMS = frozenset({"identifier", "call_expression", "member_expression", "subscript_expression", "array",
                      "parenthesized_expression", "string", "template_string", "number", "true", "false", "null",
                      "undefined", "this", "regex"})
PY_LITERALS = frozenset({"string", "integer", "float", "true", "false", "none", "concatenated_string"})
JS_LITERALS = frozenset({"string", "number", "true", "false", "null", "undefined", "regex"})
JS_RESERVED = frozenset("""break case catch class const continue debugger default delete do else enum export extends
false finally for function if import in instanceof new null return super switch this throw true try typeof var
void while with yield let static implements interface package private protected public await async of undefined
NaN Infinity arguments eval""".split())


def is_python(src: Source) -> bool:
    return src.language == "python"


def expressions(src: Source) -> frozenset[str]:
    return PY_EXPRESSIONS if is_python(src) else JS_EXPRESSIONS


def effects(src: Source) -> frozenset[str]:
    return PY_EFFECTS if is_python(src) else JS_EFFECTS


def deferred(src: Source) -> frozenset[str]:
    return PY_DEFERRED if is_python(src) else JS_DEFERRED


def literals(src: Source) -> frozenset[str]:
    return PY_LITERALS if is_python(src) else JS_LITERALS


def contains(src: Source, node: Node, types: frozenset[str]) -> Node | None:
    """The first node of one of `types` evaluated with `node` (bodies of nested functions
    and lambdas are not: they run later, if ever)."""
    skip = deferred(src)
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in types:
            return current
        if current is not node and current.type in skip:
            continue
        stack.extend(reversed(current.children))
    return None


def has_effects(src: Source, node: Node) -> bool:
    return contains(src, node, effects(src)) is not None


def is_stateful(src: Source, node: Node) -> bool:
    """Whether evaluating `node` reads more than names and literals (or runs code)."""
    return contains(src, node, PY_STATEFUL if is_python(src) else JS_STATEFUL) is not None


def is_atom(src: Source, node: Node) -> bool:
    """An expression that stays one operand wherever it is put (no parentheses needed)."""
    return node.type in (PY_ATOMS if is_python(src) else JS_ATOMS)


def parenthesized(src: Source, node: Node) -> str:
    text = src.node_text(node)
    return text if is_atom(src, node) else f"({text})"


def names_in_file(src: Source) -> set[str]:
    """Every name the file uses or binds (attribute and property names are not names)."""
    return src.memo("names", _names)


def _names(src: Source) -> set[str]:
    names = set()
    for node in src.walk():
        if node.type in ("identifier", "shorthand_property_identifier", "type_identifier",
                         "shorthand_property_identifier_pattern"):
            parent = node.parent
            if parent is not None and parent.type == "attribute" and parent.child_by_field_name("attribute") == node:
                continue
            names.add(src.node_text(node))
    return names


def fresh_name(src: Source, base: str) -> str:
    """`base`, or `base_2`, `base_3`, ... (camelCase `base2` in JavaScript): a name that appears
    nowhere in the file and is no keyword or builtin."""
    taken = names_in_file(src)
    reserved = (set(keyword.kwlist) | set(keyword.softkwlist) | BUILTIN_NAMES) if is_python(src) else JS_RESERVED
    sep = "_" if is_python(src) else ""
    candidate, n = base, 1
    while candidate in taken or candidate in reserved:
        n += 1
        candidate = f"{base}{sep}{n}"
    return candidate


def suggested_name(src: Source, node: Node, fallback: str = "value") -> str:
    """A name for the value of `node`: the attribute or the getter it reads, else `fallback`."""
    while node.type == "parenthesized_expression" and node.named_children:
        node = node.named_children[0]
    word = None
    if node.type in ("attribute", "member_expression"):
        prop = node.child_by_field_name("attribute") or node.child_by_field_name("property")
        word = src.node_text(prop) if prop is not None else None
    elif node.type in ("call", "call_expression"):
        fn = node.child_by_field_name("function")
        if fn is not None and fn.type in ("attribute", "member_expression"):
            fn = fn.child_by_field_name("attribute") or fn.child_by_field_name("property")
        if fn is not None and fn.type in ("identifier", "property_identifier"):
            name = src.node_text(fn)
            stripped = re.sub(r"^(?:get_|get(?=[A-Z]))", "", name)
            word = stripped if stripped != name else f"{name}_result" if is_python(src) else f"{name}Result"
    if not word or not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", word):
        return fallback
    if is_python(src):
        return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", word).lower()
    return word[0].lower() + word[1:]

