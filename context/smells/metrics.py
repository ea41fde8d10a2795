"""Per-function metrics from a tree-sitter tree, for every language in `rules.RULES`.

McCabe counts decision points (1 + branches, loops, non-default cases, catches, ternaries and
boolean operators). For Python it follows radon's rules exactly, so that numbers agree with the
tool people already run: `for`/`while` count one more with an `else`, `try` counts its
handlers plus its `else`, comprehensions count each `for` and `if`, `assert` counts one (and
nothing inside it), `match` counts its cases minus one irrefutable case, and nested functions
and classes are their own units. The other counts follow pylint's checks of the same names.
Walks are iterative: deeply nested expressions must not hit Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from .cognitive import cognitive_complexity
from .rules import PYTHON, LangRules


@dataclass(frozen=True)
class FunctionMetrics:
    name: str
    qualname: str  # Class.method for methods
    start: tuple[int, int]  # 0-based (row, byte column) of the definition
    end: tuple[int, int]
    name_start: tuple[int, int]  # where diagnostics point: the function's name
    name_end: tuple[int, int]
    lines: int
    statements: int
    params: int
    cyclomatic: int
    cognitive: int
    nesting: int
    returns: int
    branches: int
    locals: int


_SCOPES_PY = frozenset({"function_definition", "class_definition", "decorated_definition"})
_COMPREHENSION_PARTS = frozenset({"for_in_clause", "if_clause"})


def walk_scope(root: Node, stop: frozenset[str]):
    """Nodes under `root` (not `root` itself), not descending into `stop` types."""
    stack = list(reversed(root.children))
    while stack:
        node = stack.pop()
        yield node
        if node.type not in stop:
            stack.extend(reversed(node.children))


def _python_irrefutable(case: Node) -> bool:
    # radon subtracts one case when a pattern is a bare capture or `_` (MatchAs without pattern)
    pattern = next((c for c in case.named_children if c.type == "case_pattern"), None)
    if pattern is None:
        return False
    kids = pattern.named_children
    if not kids:
        return True
    return len(kids) == 1 and kids[0].type == "dotted_name" and kids[0].named_child_count == 1


def python_cyclomatic(body: Node) -> int:
    """radon's cyclomatic complexity of a Python function body (1 + decisions)."""
    total = 1
    stack = list(body.children)
    while stack:
        node = stack.pop()
        kind = node.type
        if kind in _SCOPES_PY:
            continue
        if kind == "assert_statement":
            total += 1
            continue  # radon does not look inside asserts
        if kind in ("if_statement", "elif_clause", "conditional_expression", "boolean_operator"):
            total += 1
        elif kind in ("for_statement", "while_statement"):
            total += 1 + (node.child_by_field_name("alternative") is not None)
        elif kind == "try_statement":
            total += sum(c.type == "except_clause" for c in node.children)
            total += any(c.type == "else_clause" for c in node.children)
        elif kind in _COMPREHENSION_PARTS and node.parent is not None and node.parent.type != "case_clause":
            total += 1  # a comprehension's `for`/`if` (a match guard is an if_clause too, uncounted)
        elif kind == "match_statement":
            block = node.child_by_field_name("body")
            cases = [c for c in (block.children if block else ()) if c.type == "case_clause"]
            total += max(0, len(cases) - any(_python_irrefutable(c) for c in cases))
        stack.extend(node.children)
    return total


def _is_logical(node: Node, rules: LangRules) -> bool:
    if node.type not in rules.logical:
        return False
    op = node.child_by_field_name("operator")
    return op is not None and op.type in rules.logical_ops


def _is_default_case(node: Node) -> bool:
    """`default:` arms (Java switch_label, C case_statement) and Rust's `_ =>` arm."""
    if node.type == "match_arm":
        pattern = node.child_by_field_name("pattern")
        return pattern is not None and pattern.text.strip() == b"_"
    return bool(node.children) and node.children[0].type == "default"


def generic_cyclomatic(body: Node, rules: LangRules, stop: frozenset[str]) -> int:
    total = 1
    decisions = rules.ifs | rules.loops | rules.catches | rules.ternaries
    for node in walk_scope(body, stop):
        kind = node.type
        if kind in decisions:
            total += 1
        elif kind in rules.cases:
            total += not _is_default_case(node)
        elif kind in rules.logical and _is_logical(node, rules):
            total += 1
    return total


def _statement(kind: str) -> bool:
    return kind.endswith(("_statement", "_declaration", "_definition", "_item")) or kind in (
        "expression_statement", "let_declaration")


def _param_count(fn: Node, rules: LangRules) -> int:
    params = fn.child_by_field_name("parameters")
    if params is None:  # C/C++: the parameter list sits inside the declarator
        declarator = fn.child_by_field_name("declarator")
        while declarator is not None and params is None:
            params = declarator.child_by_field_name("parameters")
            declarator = declarator.child_by_field_name("declarator")
    if params is None:
        return 0
    count = 0
    for child in params.named_children:
        if child.type not in rules.parameters:
            continue
        if child.type == "typed_parameter" and child.named_children and child.named_children[0].type.endswith(
                "splat_pattern"):
            continue  # *args: T and **kw: T are not counted by pylint
        if child.type == "parameter_declaration" and rules is not PYTHON:
            names = [c for c in child.children_by_field_name("name")]
            count += max(1, len(names)) if names else 1
            continue
        count += 1
    return count


def _local_names(node: Node, rules: LangRules, names: set[str]) -> None:
    """Names a local declaration introduces (left-hand identifiers)."""
    targets = [node.child_by_field_name(f) for f in ("left", "name", "alias", "declarator", "pattern")]
    for target in targets:
        if target is None:
            continue
        if target.type == "identifier":
            names.add(target.text.decode("utf-8", "replace"))
        else:
            stack = [target]
            while stack:  # tuple/pattern targets: every identifier is a name
                cur = stack.pop()
                if cur.type == "identifier":
                    names.add(cur.text.decode("utf-8", "replace"))
                elif cur.type in ("variable_declarator", "init_declarator"):
                    inner = cur.child_by_field_name("name") or cur.child_by_field_name("declarator")
                    stack.extend([inner] if inner is not None else [])
                elif cur.type not in ("attribute", "subscript", "member_expression", "field_expression",
                                      "call", "call_expression", "argument_list", "parameter_list"):
                    stack.extend(cur.named_children)


def _body(fn: Node) -> Node:
    return fn.child_by_field_name("body") or fn


def _shape(body: Node, rules: LangRules, stop: frozenset[str]) -> tuple[int, int, int, int, set[str]]:
    """(statements, max nesting, returns, branches, local names) in one walk."""
    statements = returns = branches = nesting = 0
    names: set[str] = set()
    branch_kinds = rules.ifs | rules.loops | rules.catches | rules.else_clauses | rules.cases
    stack = [(c, 0) for c in body.children]
    while stack:
        node, depth = stack.pop()
        kind = node.type
        if _statement(kind):
            statements += 1
        if kind in rules.returns:
            returns += 1
        if kind in branch_kinds and not (kind == "if_statement" and node.parent is not None
                                         and node.parent.type == "else_clause"):
            branches += 1
        if kind in rules.locals:
            _local_names(node, rules, names)
        if kind in rules.blocks:
            depth += 1
            nesting = max(nesting, depth)
        if kind not in stop:
            stack.extend((c, depth) for c in node.children)
    return statements, nesting, returns, branches, names


def function_name(fn: Node) -> Node | None:
    """The node naming a function (C/C++ names sit inside nested declarators)."""
    name = fn.child_by_field_name("name")
    declarator = fn.child_by_field_name("declarator")
    while name is None and declarator is not None:
        inner = declarator.child_by_field_name("declarator")
        if inner is None or declarator.type in ("identifier", "field_identifier", "qualified_identifier",
                                                "destructor_name", "operator_name"):
            return declarator
        declarator = inner
    if name is None and fn.parent is not None and fn.parent.type in ("variable_declarator", "pair",
                                                                     "assignment_expression"):
        name = fn.parent.child_by_field_name("name") or fn.parent.child_by_field_name("key") or \
            fn.parent.child_by_field_name("left")
    return name


def function_metrics(fn: Node, lang: str, rules: LangRules, qual_prefix: str = "") -> FunctionMetrics:
    name_node = function_name(fn)
    name = name_node.text.decode("utf-8", "replace") if name_node is not None else "<anonymous>"
    body = _body(fn)
    stop = rules.functions | rules.lambdas | rules.classes
    if rules is PYTHON:
        cyclomatic = python_cyclomatic(body) if body is not fn else 1
        stop = _SCOPES_PY
    else:
        cyclomatic = generic_cyclomatic(body, rules, stop)
    statements, nesting, returns, branches, names = _shape(body, rules, stop)
    params = _param_count(fn, rules)
    anchor = name_node or fn
    return FunctionMetrics(
        name=name, qualname=f"{qual_prefix}{name}", start=fn.start_point, end=fn.end_point,
        name_start=anchor.start_point, name_end=anchor.end_point,
        lines=fn.end_point[0] - fn.start_point[0] + 1, statements=statements, params=params,
        cyclomatic=cyclomatic, cognitive=cognitive_complexity(fn, rules, name),
        nesting=nesting, returns=returns, branches=branches, locals=len(names) + params,
    )
