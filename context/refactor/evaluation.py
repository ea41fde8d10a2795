"""When, and how often, an expression at a given place runs: the rules extract variable and
inline variable share. An expression can move across the statement that holds it (to a new
variable before it, or from a variable into it) only if it runs exactly once, every time that
statement runs, and nothing the statement does before it could change what it computes."""

from __future__ import annotations

from tree_sitter import Node

from .exprs import contains, deferred, effects, is_python, is_stateful
from .source import Source, ancestors, field_of

PY_STATEMENT_PARENTS = frozenset({"block", "module"})
JS_STATEMENT_PARENTS = frozenset({"statement_block", "program", "switch_case", "switch_default",
                                  "class_static_block"})


def statement_parents(src: Source) -> frozenset[str]:
    return PY_STATEMENT_PARENTS if is_python(src) else JS_STATEMENT_PARENTS


def anchor_of(src: Source, node: Node) -> tuple[Node | None, str | None]:
    """The statement the new variable goes before, or why there is none that keeps the
    expression's evaluation as it was."""
    child = node
    for parent in ancestors(node):
        problem = evaluation_problem(src, parent, child)
        if problem is not None:
            return None, problem
        if parent.type in statement_parents(src):
            if parent.parent is not None and parent.parent.type == "class_definition":
                return None, "the expression is in a class body: a variable there would become a class attribute"
            return child, None
        child = parent
    return None, "the expression is not inside a statement"


def evaluation_problem(src: Source, parent: Node, child: Node) -> str | None:  # noqa: C901 - one rule a line
    """Why evaluating `child` (a part of `parent`) once before the statement would differ."""
    kind, where = parent.type, field_of(child)
    if kind in deferred(src) and where == "body":
        return "the expression is inside a function or lambda body: it runs on each call, not once"
    if kind == "type":
        return "the expression is an annotation, which need not be evaluated at all"
    if kind == "assert_statement":
        return "the expression is in an assert, which does not run under `python -O`"
    if kind in ("list_comprehension", "set_comprehension", "dictionary_comprehension", "generator_expression"):
        first = next((c for c in parent.named_children if c.type == "for_in_clause"), None)
        if not (first is not None and child.id == first.id):
            return "the expression is inside a comprehension: it runs once per item"
    if kind == "for_in_clause":
        first = next((c for c in parent.parent.named_children if c.type == "for_in_clause"), None) \
            if parent.parent is not None else None
        if where != "right" or first is None or first.id != parent.id:
            return "the expression is inside a comprehension: it runs once per item"
    if kind == "conditional_expression" and parent.named_children and child.id != parent.named_children[1].id:
        return "the expression is one branch of a conditional expression: it runs only on that branch"
    if kind == "ternary_expression" and where in ("consequence", "alternative"):
        return "the expression is one branch of a conditional expression: it runs only on that branch"
    if kind == "boolean_operator" and where == "right":
        return "the expression is on the right of `and`/`or`: it runs only when the left side lets it"
    if kind == "binary_expression" and where == "right" and \
            src.node_text(parent.child_by_field_name("operator")) in ("&&", "||", "??"):
        return "the expression is on the right of `&&`/`||`/`??`: it runs only when the left side lets it"
    if kind in ("while_statement", "do_statement") and where == "condition":
        return "the expression is a loop condition: it runs on every pass"
    if kind == "for_statement" and where in ("condition", "increment"):
        return "the expression is part of a loop's condition or step: it runs on every pass"
    if kind in ("elif_clause", "except_clause", "case_clause", "if_clause") or (kind == "switch_case" and where == "value"):
        return "the expression is a test that runs only when the earlier ones fail"
    if kind in ("if_statement", "while_statement", "for_statement", "for_in_statement", "labeled_statement",
                "else_clause", "do_statement", "with_statement") and not is_python(src) and where in (
            "consequence", "alternative", "body"):
        return "the expression is in a statement without braces: a variable cannot go before it"
    if kind in ("member_expression", "call_expression", "subscript_expression"):
        own = parent.child_by_field_name("object") or parent.child_by_field_name("function")
        if own is not None and own.id != child.id and _optional_chain(own):
            return "the expression is after an optional chain (`?.`): it runs only when the chain goes on"
        if own is not None and own.id == child.id and _optional_chain(child):
            return "the expression ends in an optional chain (`?.`) that the rest of the chain depends on"
    if kind in ("class_body", "public_field_definition", "field_definition"):
        return "the expression is a class field initializer"
    return None


def _optional_chain(node: Node) -> bool:
    while node is not None and node.type in ("member_expression", "call_expression", "subscript_expression"):
        if any(c.type == "optional_chain" for c in node.children):
            return True
        node = node.child_by_field_name("object") or node.child_by_field_name("function")
    return False


def ordering_problem(src: Source, node: Node, anchor: Node) -> str | None:
    """Moving `node` ahead of its statement must not move it ahead of a call (or an await, or
    an assignment) that the statement makes first, unless it reads only names and literals."""
    if contains(src, node, frozenset({"yield", "yield_expression", "named_expression"})) is not None:
        return "the expression yields or assigns a name: moving it would change the statement's order"
    before = evaluated_before(src, anchor, node)
    assigned = [n for n in before if n.type in _ASSIGNING]
    if assigned:
        return f"the statement assigns with `{src.node_text(assigned[0])[:40]}` first: the expression could depend on it"
    if not is_stateful(src, node):
        return None
    before = [n for n in before if n.type in effects(src)]
    if before:
        first = src.node_text(before[0]).split("\n", 1)[0][:40]
        return f"the statement runs `{first}` before the expression: moving it first could change what it sees"
    return None


_ASSIGNING = frozenset({"named_expression", "assignment_expression", "augmented_assignment_expression",
                        "update_expression"})


def evaluated_before(src: Source, anchor: Node, node: Node) -> list[Node]:
    """Nodes of the statement that end before `node` starts (not in nested function bodies)."""
    out, stack, skip = [], [anchor], deferred(src)
    while stack:
        current = stack.pop()
        if current.start_byte >= node.start_byte:
            continue
        if current.end_byte <= node.start_byte:
            out.append(current)
        if current is not anchor and current.type in skip:
            continue
        if current.type in ("block", "statement_block"):
            continue  # a compound statement's body runs after its header
        stack.extend(reversed(current.children))
    return sorted(out, key=lambda n: n.start_byte)
