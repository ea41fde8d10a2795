"""Which Python names a run of statements needs from before it and hands on after it.

A read inside the statements is *covered* when a binding of the same name certainly runs
before it: an earlier statement of the same block (or of a block enclosing it, inside the
statements) that binds the name on every path, or the header of the `for`/`with`/`except`
whose body holds the read. An uncovered read needs the value from before, so it becomes a
parameter of an extracted function. A binding on every path of the statements themselves
is what lets a name be returned without being passed in first.
"""

from __future__ import annotations

from tree_sitter import Node

from .pyscope import Use
from .source import ancestors, field_of

_COMPOUND_HEADERS = {"for_statement": "left", "with_statement": None, "except_clause": None}


def binds_on_every_path(statement: Node, name: str, bindings: list[Use]) -> bool:
    """Whether running `statement` (to completion) always binds `name`."""
    for use in bindings:
        if use.name != name or not _within(use.node, statement):
            continue
        if _unconditional(use.node, statement):
            return True
    return False


def _unconditional(node: Node, statement: Node) -> bool:
    child = node
    for parent in ancestors(node):
        if parent.type in ("block", "named_expression", "boolean_operator", "conditional_expression",
                           "lambda", "list_comprehension", "set_comprehension", "dictionary_comprehension",
                           "generator_expression"):
            return False
        if parent.type == "for_statement" and field_of(child) == "left":
            return False  # the loop may not run at all
        if parent.id == statement.id:
            return True
        child = parent
    return False


def is_covered(read: Use, top: list[Node], bindings: list[Use]) -> bool:
    """Whether a binding of `read.name` inside the statements `top` certainly runs before `read`."""
    node = read.node
    child = node
    for parent in ancestors(node):
        if parent.type in _COMPOUND_HEADERS and _header_binds(parent, child, read.name, bindings):
            return True
        siblings = top if any(child.id == t.id for t in top) else (
            parent.named_children if parent.type == "block" else [])
        for sibling in siblings:
            if sibling.start_byte >= child.start_byte:
                break
            if binds_on_every_path(sibling, read.name, bindings):
                return True
        if any(child.id == t.id for t in top):
            return False
        child = parent
    return False


def _header_binds(statement: Node, child: Node, name: str, bindings: list[Use]) -> bool:
    """A read in the body of a for/with/except whose header binds `name`."""
    if child.type != "block":
        return False
    for use in bindings:
        if use.name == name and _within(use.node, statement) and not _within(use.node, child):
            header = use.node
            inside_other_block = any(a.type == "block" and _within(a, statement) and a.id != statement.id
                                     for a in ancestors(header) if a.start_byte >= statement.start_byte
                                     and a.end_byte <= statement.end_byte)
            if not inside_other_block:
                return True
    return False


def _within(node: Node, outer: Node) -> bool:
    return outer.start_byte <= node.start_byte and node.end_byte <= outer.end_byte
