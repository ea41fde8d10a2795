"""Extract variable: the selected expression becomes a variable assigned just before the
statement that evaluates it, and the selection reads that variable.

It is offered only where the move keeps the program's behaviour: the expression must be
evaluated exactly once, every time the statement runs, and before anything else the
statement does that could change its value. So not inside a lambda or nested function, a
comprehension (beyond its first iterable), one branch of a conditional expression, the right
side of `and`/`or`/`&&`/`||`/`??`, a loop condition, an `elif`/`except`/`case` test, an
optional chain, or a class body; and an expression that calls or reads attributes is not
moved ahead of a call the statement makes before it. Where the selection is an expression
but one of these holds, the action is offered disabled with the reason.
"""

from __future__ import annotations

from tree_sitter import Node

from .edits import Edit, Refactoring
from .evaluation import anchor_of, ordering_problem
from .exprs import expressions, fresh_name, is_python, suggested_name
from .source import Source, ancestors, field_of

KIND = "refactor.extract.variable"
_NOT_VALUES = {  # (parent type, field): the node there is a name or target, not a value
    ("assignment", "left"), ("augmented_assignment", "left"), ("keyword_argument", "name"),
    ("attribute", "attribute"), ("for_statement", "left"), ("for_in_clause", "left"),
    ("named_expression", "name"), ("assignment_expression", "left"), ("augmented_assignment_expression", "left"),
    ("member_expression", "property"), ("variable_declarator", "name"), ("for_in_statement", "left"),
    ("pair", "key"), ("update_expression", "argument"), ("function_definition", "name"),
    ("class_definition", "name"),
}


def extract_variable(src: Source, start: int, end: int) -> list[Refactoring]:
    node = src.exactly(start, end)
    if node is None or node.type not in expressions(src) or node.type == "identifier":
        return []
    if node.parent is not None and (node.parent.type, field_of(node)) in _NOT_VALUES:
        return []
    if node.parent is not None and node.parent.type == "expression_statement" and \
            src.span(node.parent)[0] == src.span(node)[0] and len(node.parent.named_children) == 1:
        return []  # the whole statement: a variable nothing reads
    if any(a.type == "delete_statement" for a in ancestors(node)) or \
            (node.parent is not None and src.node_text(node.parent).startswith("delete ")):
        return []  # `del x.y` / `delete o.p` need the reference itself
    title = "Extract variable"
    anchor, problem = anchor_of(src, node)
    if problem is not None:
        return [Refactoring(KIND, title, reason=problem)]
    assert anchor is not None
    problem = ordering_problem(src, node, anchor)
    if problem is not None:
        return [Refactoring(KIND, title, reason=problem)]
    name = fresh_name(src, suggested_name(src, node))
    return [_edit(src, node, anchor, name, f"{title} `{name}`")]


def _edit(src: Source, node: Node, anchor: Node, name: str, title: str) -> Refactoring:
    expr = src.node_text(node)
    if node.type == "generator_expression" and not expr.startswith("("):
        expr = f"({expr})"  # a bare generator argument: f(x for x in y)
    declaration = f"{name} = {expr}" if is_python(src) else f"const {name} = {expr}"
    anchor_start, _ = src.span(anchor)
    node_start, node_end = src.span(node)
    if src.only_whitespace_before(anchor_start):
        line = src.line_start(anchor_start)
        semicolon = ";" if not is_python(src) and _uses_semicolons(src, anchor) else ""
        insert = Edit(line, line, src.indentation(anchor_start) + declaration + semicolon + "\n")
    else:  # another statement precedes it on its line
        insert = Edit(anchor_start, anchor_start, declaration + "; ")
    return Refactoring(KIND, title, (insert, Edit(node_start, node_end, name)), (insert.start, node_end),
                       notes=(f"the new variable is named `{name}`",))


def _uses_semicolons(src: Source, anchor: Node) -> bool:
    """Whether the file ends its statements with semicolons (most of them, or the anchor)."""
    if src.node_text(anchor).endswith(";"):
        return True
    statements = [n for n in src.walk() if n.type in ("lexical_declaration", "expression_statement",
                                                       "variable_declaration", "return_statement")]
    return sum(src.node_text(n).endswith(";") for n in statements) * 2 > len(statements)
