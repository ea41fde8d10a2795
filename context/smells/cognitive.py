"""Cognitive complexity, following SonarSource's white paper (G. Ann Campbell, 2017).

- +1 for each `if`, `else if`/`elif`, `else`, ternary, `switch`/`match`, loop, `catch`/`except`,
  labelled `break`/`continue`, `goto`, each run of like boolean operators, and each recursive call.
- Structures that nest (`if`, ternary, `switch`, loops, `catch`) add the current nesting level
  on top; `else if` and `else` do not ("hybrid" increments).
- Nesting grows inside those structures and inside nested functions and lambdas, whose
  complexity counts towards the enclosing function.
Conditions and loop headers sit at the structure's own level; only bodies nest deeper.
"""

from __future__ import annotations

import functools

from tree_sitter import Node

from .rules import PYTHON, LangRules

# Fields of a structure that belong to its header: visited at the structure's own level.
_HEADER_FIELDS = frozenset({"condition", "value", "subject", "left", "right", "initializer", "update", "init",
                            "pattern", "type", "name", "parameters", "parameter", "alias", "operand"})
_PARENS = frozenset({"parenthesized_expression"})
_LABELS = frozenset({"label", "statement_identifier", "identifier", "label_name", "loop_label"})


def _operator(node: Node, rules: LangRules) -> str | None:
    if node.type not in rules.logical:
        return None
    op = node.child_by_field_name("operator")
    return op.type if op is not None and op.type in rules.logical_ops else None


def _logical_parent(node: Node, rules: LangRules) -> bool:
    parent = node.parent
    while parent is not None and parent.type in _PARENS:
        parent = parent.parent
    return parent is not None and _operator(parent, rules) is not None


def _operator_runs(root: Node, rules: LangRules) -> int:
    """Runs of like operators in a boolean expression, read left to right: `a && b || c` is 2."""
    ops: list[str] = []
    stack: list[Node | str] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            ops.append(item)
            continue
        while item.type in _PARENS and item.named_child_count == 1:
            item = item.named_children[0]
        op = _operator(item, rules)
        if op is None:
            continue
        left, right = item.child_by_field_name("left"), item.child_by_field_name("right")
        # in order: the left subtree, then this operator, then the right subtree (LIFO stack)
        stack.extend(x for x in (right, op, left) if x is not None)
    return sum(1 for i, op in enumerate(ops) if i == 0 or ops[i - 1] != op)


def _is_else_if(node: Node, rules: LangRules) -> bool:
    parent = node.parent
    if parent is None:
        return False
    if parent.type in rules.else_clauses and rules is not PYTHON:
        return True
    if parent.type in rules.ifs:
        alt = parent.child_by_field_name("alternative")
        return alt is not None and alt.start_byte == node.start_byte and alt.type == node.type
    return False


def _has_label(node: Node) -> bool:
    return any(c.type in _LABELS for c in node.named_children)


def _callee_name(call: Node) -> str | None:
    fn = call.child_by_field_name("function")
    if fn is None:  # Java method_invocation: `name` with an optional `object`
        obj, name = call.child_by_field_name("object"), call.child_by_field_name("name")
        if name is not None and (obj is None or obj.type == "this"):
            return name.text.decode("utf-8", "replace")
        return None
    if fn.type == "identifier":
        return fn.text.decode("utf-8", "replace")
    obj = fn.child_by_field_name("object") or fn.child_by_field_name("operand") or fn.child_by_field_name("argument")
    attr = fn.child_by_field_name("attribute") or fn.child_by_field_name("property") or fn.child_by_field_name("field")
    if obj is not None and attr is not None and obj.text in (b"self", b"this", b"cls"):
        return attr.text.decode("utf-8", "replace")
    return None


def _push_structure(node: Node, nesting: int, stack: list, rules: LangRules) -> None:
    """Children of a nesting structure: header at its level, bodies one deeper."""
    for i, child in enumerate(node.children):
        field = node.field_name_for_child(i)
        if field == "alternative" and node.type in rules.ifs:
            if child.type in rules.ifs or child.type in rules.else_clauses:
                stack.append((child, nesting))  # else-if / else: scored flat where they are handled
            else:
                stack.append((child, nesting + 1, "else"))
        elif field in _HEADER_FIELDS:
            stack.append((child, nesting))
        else:
            stack.append((child, nesting + 1))


def _score_else(node: Node, nesting: int, rules: LangRules, stack: list) -> int:
    """`elif` (+1, with its own condition and body), `else` (+1) and `else if` wrappers (0: the
    inner `if` scores itself); a loop's or `try`'s `else` scores nothing and nests no deeper."""
    if rules is PYTHON and node.type == "elif_clause":
        _push_structure(node, nesting, stack, rules)
        return 1
    is_if_branch = node.parent is not None and node.parent.type in rules.ifs
    deeper = 1 if is_if_branch else 0
    inner_if = False
    for child in node.children:
        if child.type in rules.ifs:
            inner_if = True
            stack.append((child, nesting))
        else:
            stack.append((child, nesting + deeper))
    return 1 if is_if_branch and not inner_if else 0


@functools.cache
def _nesting_structures(rules: LangRules) -> frozenset[str]:
    return rules.loops | rules.switches | rules.catches | rules.ternaries


@functools.cache
def _scopes(rules: LangRules) -> frozenset[str]:
    return rules.functions | rules.lambdas | rules.classes


def _score(node: Node, nesting: int, rules: LangRules, stack: list) -> int:
    """The increment for `node`; pushes its children with their nesting level."""
    kind = node.type
    if kind in rules.ifs:
        _push_structure(node, nesting, stack, rules)
        return 1 if _is_else_if(node, rules) else 1 + nesting
    if kind in rules.else_clauses:
        return _score_else(node, nesting, rules, stack)
    if kind in _nesting_structures(rules):
        _push_structure(node, nesting, stack, rules)
        return 1 + nesting
    if kind in _scopes(rules):
        stack.extend((c, nesting + 1) for c in node.children)
        return 0
    stack.extend((c, nesting) for c in node.children)
    if kind in rules.labelled_jumps:
        return 1 if kind == "goto_statement" or _has_label(node) else 0
    if _operator(node, rules) is not None and not _logical_parent(node, rules):
        return _operator_runs(node, rules)
    return 0


def cognitive_complexity(fn: Node, rules: LangRules, name: str | None = None) -> int:
    """Cognitive complexity of one function, nested functions and lambdas included."""
    body = fn.child_by_field_name("body") or fn
    total = 0
    stack: list = [(c, 0) for c in reversed(body.children)]
    while stack:
        item = stack.pop()
        node, nesting = item[0], item[1]
        if len(item) == 3:  # a plain `else` block of a Java/Go if: +1, body one deeper
            total += 1
        total += _score(node, nesting, rules, stack)
        if name and node.type in rules.calls and _callee_name(node) == name:
            total += 1
    return total
