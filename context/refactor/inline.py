"""Inline variable: a variable assigned once is replaced by its value wherever it is read,
and its assignment goes away (Python, JavaScript, TypeScript).

A value made only of names, literals and operators (nothing mutable, nothing that calls) may
be copied to every read, as long as the names it reads mean the same there and are not
reassigned before the last read. Any other value (a call, an attribute, a list or object
literal, whose identity matters) moves only into a single read in the very next statement,
at a place that runs exactly once and before anything else in that statement could change
it. Reads must follow the assignment in the same block (or blocks inside it); module-level
Python variables and exported JavaScript ones are not inlined, since other modules may read
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from .edits import Edit, Refactoring
from .evaluation import evaluated_before, evaluation_problem, statement_parents
from .exprs import contains, effects, is_python, parenthesized
from .jsscope import JsScopes, js_scopes
from .pyflow import is_covered
from .pyscope import PyScopes, Scope, python_scopes
from .source import Source, ancestors, field_of

KIND = "refactor.inline.variable"
PY_DUPLICABLE = frozenset({"identifier", "integer", "float", "string", "string_start", "string_content",
                           "string_end", "interpolation", "escape_sequence", "true", "false", "none",
                           "binary_operator", "unary_operator", "boolean_operator", "comparison_operator",
                           "not_operator", "parenthesized_expression", "tuple", "conditional_expression",
                           "concatenated_string", "escape_interpolation"})
JS_DUPLICABLE = frozenset({"identifier", "number", "string", "string_fragment", "escape_sequence", "template_string",
                           "template_substitution", "true", "false", "null", "undefined", "binary_expression",
                           "unary_expression", "ternary_expression", "parenthesized_expression"})
# Where a read can take any expression without parentheses.
_OPEN_CONTEXTS = frozenset({"argument_list", "arguments", "return_statement", "expression_statement", "list",
                            "array", "set", "keyword_argument", "pair", "interpolation", "template_substitution",
                            "parenthesized_expression", "jsx_expression", "variable_declarator", "assignment",
                            "subscript_expression", "spread_element"})


@dataclass
class _Variable:
    name: str
    declaration: Node  # the statement that assigns it
    value: Node
    reads: list[Node]
    value_names: list[tuple[str, object]]  # names the value reads, with the scope each resolves to


def inline_variable(src: Source, start: int, end: int) -> list[Refactoring]:
    node = src.covering(*src.trim(start, end)) if start != end else src.covering(start, end)
    if node.type not in ("identifier", "shorthand_property_identifier"):
        return []
    title = f"Inline variable `{src.node_text(node)}`"
    try:
        var = _python_variable(src, node) if is_python(src) else _js_variable(src, node)
        if var is None:
            return []
        return [_inline(src, var, title)]
    except _Refused as exc:
        return [Refactoring(KIND, title, reason=str(exc))]


class _Refused(Exception):
    pass


# -- Python -----------------------------------------------------------------------------------

def _python_variable(src: Source, node: Node) -> _Variable | None:
    scopes = python_scopes(src)
    use = next((u for u in scopes.uses if u.node.id == node.id), None)
    if use is None:
        return None
    owner = use.scope if use.bind and use.scope.binds(use.name) else scopes.resolve(use.name, use.scope)
    if not isinstance(owner, Scope):
        return None
    name = use.name
    if owner.kind == "module":
        raise _Refused("a module-level variable can be imported by other modules")
    if owner.kind == "class":
        raise _Refused("a class attribute is read through the class")
    binds = [u for u in scopes.uses if u.bind and u.name == name and _owner(scopes, u) is owner]
    if not any(b.node.parent is not None and b.node.parent.type == "assignment" for b in binds):
        return None  # a parameter, an import, a loop variable: not a variable with a value to inline
    if len(binds) != 1:
        raise _Refused(f"`{name}` is assigned {len(binds)} times; only a variable assigned once can be inlined")
    target = binds[0].node
    assignment = target.parent
    if assignment is None or assignment.type != "assignment" or assignment.child_by_field_name("left") != target \
            or assignment.parent is None or assignment.parent.type != "expression_statement":
        raise _Refused(f"`{name}` is not bound by a plain `{name} = value` statement")
    value = assignment.child_by_field_name("right")
    if value is None or value.type in ("assignment", "expression_list", "yield"):
        raise _Refused(f"`{name}` has no single value to inline")
    statement = assignment.parent
    reads = [u for u in scopes.uses if not u.bind and u.name == name and scopes.resolve(name, u.scope) is owner]
    if not reads:
        raise _Refused(f"`{name}` is never read")
    for read in reads:
        block_children = statement.parent.named_children if statement.parent is not None else []
        if not is_covered(read, block_children, [binds[0]]) or read.start < statement.end_byte:
            raise _Refused(f"`{name}` is read at line {read.node.start_point.row + 1} where it may not have "
                           "this value")
    value_names = _value_names(scopes, name, value, reads)
    var = _Variable(name, statement, value, [r.node for r in reads], value_names)
    nested = any(_in_nested_function(src, r.node, statement) for r in reads)
    _check_rebinding(var, [(u.name, _owner(scopes, u), u.start) for u in scopes.uses if u.bind], owner.node, nested)
    return var


def _owner(scopes: PyScopes, use) -> object:
    """The scope a binding binds in (a `nonlocal`/`global` binding: the scope it names)."""
    if use.scope.binds(use.name):
        return use.scope
    return scopes.resolve(use.name, use.scope)


# -- JavaScript / TypeScript ------------------------------------------------------------------

def _js_variable(src: Source, node: Node) -> _Variable | None:
    scopes = js_scopes(src)
    use = next((u for u in scopes.uses if u.node.id == node.id), None)
    if use is None:
        return None
    name = use.name
    owner = scopes.resolve(name, use.scope)
    if owner is None:
        return None
    binds = [u for u in scopes.uses if u.bind and u.name == name and u.scope is owner]
    if not any(b.node.parent is not None and b.node.parent.type == "variable_declarator" for b in binds):
        return None  # a parameter, an import, a function: nothing to inline
    declarator = binds[0].node.parent if len(binds) == 1 else None
    if len(binds) != 1 or declarator is None or declarator.type != "variable_declarator" or \
            declarator.child_by_field_name("name") != binds[0].node:
        raise _Refused(f"`{name}` is not declared once by `const`/`let`/`var {name} = value`")
    statement = declarator.parent
    value = declarator.child_by_field_name("value")
    if value is None or statement is None or len(statement.named_children) != 1:
        raise _Refused(f"`{name}` is not the only variable of its declaration, or has no value")
    if statement.parent is None or statement.parent.type not in statement_parents(src):
        raise _Refused(f"`{name}` is declared where its declaration cannot be removed (an export or a loop head)")
    reads = [u for u in scopes.uses if not u.bind and u.name == name and scopes.resolve(name, u.scope) is owner]
    if not reads:
        raise _Refused(f"`{name}` is never read")
    for read in reads:
        parent = read.node.parent
        if parent is not None and (parent.type in ("export_specifier", "update_expression") or (
                parent.type in ("assignment_expression", "augmented_assignment_expression")
                and field_of(read.node) == "left")):
            raise _Refused(f"`{name}` is assigned or exported at line {read.node.start_point.row + 1}")
        if read.start < statement.end_byte or not _js_dominated(statement, read.node):
            raise _Refused(f"`{name}` is read at line {read.node.start_point.row + 1} where it may not have "
                           "this value")
    value_names = _value_names(scopes, name, value, reads)
    var = _Variable(name, statement, value, [r.node for r in reads], value_names)
    writes = [(u.name, scopes.resolve(u.name, u.scope), u.start) for u in scopes.uses if _js_writes(u.node)]
    nested = any(_in_nested_function(src, r.node, statement) for r in reads)
    _check_rebinding(var, writes + [(u.name, u.scope, u.start) for u in scopes.uses if u.bind], owner.node, nested)
    return var


def _js_writes(node: Node) -> bool:
    parent = node.parent
    if parent is None:
        return False
    if parent.type == "update_expression":
        return True
    return parent.type in ("assignment_expression", "augmented_assignment_expression") and field_of(node) == "left"


def _js_dominated(statement: Node, read: Node) -> bool:
    """Whether `statement` is an earlier sibling of something holding `read` in one block."""
    for parent in ancestors(read):
        if statement.parent is not None and parent.id == statement.parent.id:
            return True
    return False


# -- both ---------------------------------------------------------------------------------------

def _check_rebinding(var: _Variable, bindings: list[tuple[str, object, int]], scope_node: Node,
                     nested_reads: bool) -> None:
    """The names the value reads must not be reassigned between the assignment and the last
    read (anywhere after the assignment, when a read sits in a nested function, which may run
    at any later time)."""
    wanted = {(name, owner) for name, owner in var.value_names if owner is not None and not isinstance(owner, str)}
    if not wanted:
        return
    limit = scope_node.end_byte if nested_reads else max(r.end_byte for r in var.reads)
    for name, owner, start in bindings:
        if (name, owner) in wanted and var.declaration.end_byte <= start < limit:
            raise _Refused(f"`{name}`, which the value reads, is reassigned before the value is used")


def _duplicable(src: Source, value: Node) -> bool:
    allowed = PY_DUPLICABLE if is_python(src) else JS_DUPLICABLE
    for node in src.walk(value):
        if node.is_named and node.type not in allowed:
            return False
        if node.type == "unary_expression" and src.node_text(node).startswith("delete"):
            return False
    return True


def _value_names(scopes: PyScopes | JsScopes, name: str, value: Node, reads: list) -> list[tuple[str, object]]:
    """The names the value reads, with what each is bound to; refused when the value reads the
    variable itself or a name that means something else at one of the variable's reads."""
    value_reads = [u for u in scopes.uses if not u.bind and value.start_byte <= u.start and u.end <= value.end_byte]
    if any(u.name == name for u in value_reads):
        raise _Refused(f"the value of `{name}` reads `{name}` itself")
    for read in reads:
        for u in value_reads:
            if scopes.resolve(u.name, read.scope) is not scopes.resolve(u.name, u.scope):
                raise _Refused(f"`{u.name}` means something else at line {read.node.start_point.row + 1}")
    return [(u.name, scopes.resolve(u.name, u.scope)) for u in value_reads]


def _in_nested_function(src: Source, read: Node, declaration: Node) -> bool:
    scope_types = ("function_definition", "lambda", "class_definition", "arrow_function", "function_expression",
                   "function", "function_declaration", "method_definition", "generator_function",
                   "generator_function_declaration", "list_comprehension", "set_comprehension",
                   "dictionary_comprehension", "generator_expression")
    for parent in ancestors(read):
        if parent.start_byte <= declaration.start_byte and declaration.end_byte <= parent.end_byte:
            return False
        if parent.type in scope_types:
            return True
    return False


def _single_use_problem(src: Source, var: _Variable) -> str | None:
    """For a value that must run exactly where it ran: one read, in the next statement, at a
    place that runs once and before anything that could change the value."""
    if len(var.reads) != 1:
        return (f"the value of `{var.name}` calls, reads attributes or makes a new object, and `{var.name}` is "
                f"read {len(var.reads)} times: copying it would run it more than once")
    read = var.reads[0]
    siblings = [c for c in var.declaration.parent.named_children if c.type != "comment"]
    index = next(i for i, c in enumerate(siblings) if c.id == var.declaration.id)
    following = siblings[index + 1] if index + 1 < len(siblings) else None
    if following is None or not (following.start_byte <= read.start_byte and read.end_byte <= following.end_byte):
        return (f"the value of `{var.name}` calls, reads attributes or makes a new object: it can only move into "
                "the statement right after it")
    child = read
    for parent in ancestors(read):
        if parent.id == following.parent.id:
            break
        problem = evaluation_problem(src, parent, child)
        if problem is not None:
            return problem.replace("the expression is", f"`{var.name}` is read")
        child = parent
    runs_code = contains(src, var.value, effects(src)) is not None or not _duplicable(src, var.value)
    first_effect = next((n for n in evaluated_before(src, following, read) if n.type in effects(src)), None)
    if runs_code and first_effect is not None:
        return (f"the statement runs `{src.node_text(first_effect)[:40]}` before reading `{var.name}`: the value "
                "could differ there")
    return None


def _inline(src: Source, var: _Variable, title: str) -> Refactoring:
    if not _duplicable(src, var.value):
        problem = _single_use_problem(src, var)
        if problem is not None:
            raise _Refused(problem)
    start, end = src.span(var.declaration)
    if not src.only_whitespace_before(start) or src.text[end:src.line_end(end)].strip() not in ("", ";") and \
            not src.text[end:src.line_end(end)].strip().startswith(("#", "//")):
        raise _Refused(f"the assignment of `{var.name}` shares its line with other code")
    edits = [Edit(src.line_start(start), src.next_line(end), "")]
    for read in var.reads:
        edits.append(Edit(*src.span(read), _replacement(src, var, read)))
    last = max(src.span(r)[1] for r in var.reads)
    return Refactoring(KIND, title, tuple(edits), (src.line_start(start), last))


def _replacement(src: Source, var: _Variable, read: Node) -> str:
    value = var.value
    text = src.node_text(value)
    if read.type == "shorthand_property_identifier":
        return f"{var.name}: {text}"
    interpolation = next((a for a in ancestors(read) if a.type == "interpolation"), None)
    if interpolation is not None:
        string = interpolation.parent
        quote = src.node_text(string.children[0])[-1:] if string is not None and string.children else '"'
        if quote in text or "\\" in text or "\n" in text or "#" in text:
            raise _Refused(f"the value of `{var.name}` cannot go inside the f-string (quotes, backslashes or lines)")
        return parenthesized(src, value)
    parent, where = read.parent, field_of(read)
    open_context = parent is not None and parent.type in _OPEN_CONTEXTS and where not in ("function", "object", "value") \
        or (parent is not None and parent.type in ("assignment", "assignment_expression") and where == "right") \
        or (parent is not None and parent.type in ("keyword_argument", "pair", "variable_declarator") and where == "value")
    if "\n" in text and is_python(src) and value.type not in ("parenthesized_expression", "call", "list", "dictionary",
                                                              "set", "tuple", "list_comprehension"):
        return f"({text})"
    if value.type == "sequence_expression" or (parent is not None and parent.type == "expression_statement"
                                                and value.type in ("object", "function_expression", "function", "class")):
        return f"({text})"
    return text if open_context else parenthesized(src, value)
