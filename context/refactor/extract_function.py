"""Extract function (Python): selected statements, or one selected expression, become a new
function; the selection becomes a call to it.

The values the code reads from the enclosing function become parameters (also the closure
variables of enclosing functions, and for an expression the variables of an enclosing
comprehension or lambda); names it assigns that the rest of the function still reads come
back as return values (a name assigned only on some paths is passed in as well, so that the
other paths return what it held). Inside a method the new code is a method of the same
class (`self.x(...)`, or a static method when it does not use `self`), elsewhere a function
of the module, placed before the top-level statement that holds the selection.

Refused, with the reason: `return`, `yield`, `break`/`continue` leaving the selection,
`global`/`nonlocal`, deleting a local, a name read before any value could be known, a name
that would be returned but is assigned only on some paths, `super()` or private
(`__name`) attributes outside a class, statements sharing lines with code outside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tree_sitter import Node

from .edits import Edit, Refactoring
from .exprs import contains, fresh_name
from .new_function import definition, placement
from .pyflow import binds_on_every_path, is_covered
from .pyscope import PyScopes, Scope, Use, python_scopes
from .source import Source, ancestors

KIND = "refactor.extract.function"
TITLE = "Extract function"
_LOOPS = frozenset({"for_statement", "while_statement"})
_MANGLED = re.compile(r"^__\w*[^_]_?$")


@dataclass
class _Selection:
    nodes: list[Node]  # the statements, or the one expression
    expression: bool
    scope: Scope  # where the selected code runs


def extract_function(src: Source, start: int, end: int) -> list[Refactoring]:
    if src.language != "python":
        return []
    start, end = src.trim(start, end)
    if start >= end:
        return []
    scopes = python_scopes(src)
    selection, problem = _select(src, scopes, start, end)
    if selection is None:
        return [] if problem is None else [Refactoring(KIND, TITLE, reason=problem)]
    try:
        return [_extract(src, scopes, selection)]
    except _Refused as exc:
        return [Refactoring(KIND, TITLE, reason=str(exc))]


class _Refused(Exception):
    pass


def _select(src: Source, scopes: PyScopes, start: int, end: int) -> tuple[_Selection | None, str | None]:
    node = src.exactly(start, end)
    whole_statement = node is not None and node.parent is not None and \
        node.parent.type == "expression_statement" and src.span(node.parent) == (start, end)
    if node is not None and node.type in _EXTRACTABLE_EXPRESSIONS and not whole_statement and not _is_target(node):
        if any(a.type in ("type", "decorator") for a in ancestors(node)):
            return None, None  # an annotation or decorator is not a value computed in a body
        return _Selection([node], True, scopes.scope_of(node)), None
    block = src.covering(start, end)
    while block is not None and block.type not in ("block", "module"):
        block = block.parent
    if block is None:
        return None, None
    chosen = [c for c in block.named_children if src.span(c)[0] < end and src.span(c)[1] > start]
    if not chosen or src.span(chosen[0])[0] != start or src.span(chosen[-1])[1] != end:
        return None, None  # not whole statements
    chosen_statements = [c for c in chosen if c.type != "comment"]
    if not chosen_statements:
        return None, None
    if block.parent is not None and block.parent.type == "class_definition":
        return None, "the statements are in a class body"
    if not src.only_whitespace_before(start) or src.text[end:src.line_end(end)].strip() and \
            not src.text[end:src.line_end(end)].strip().startswith("#"):
        return None, "the selected statements share a line with other code"
    return _Selection(chosen, False, scopes.scope_of(chosen_statements[0])), None


_EXTRACTABLE_EXPRESSIONS = frozenset({
    "call", "attribute", "subscript", "binary_operator", "boolean_operator", "comparison_operator", "not_operator",
    "unary_operator", "conditional_expression", "list", "tuple", "dictionary", "set", "list_comprehension",
    "set_comprehension", "dictionary_comprehension", "generator_expression", "parenthesized_expression", "await",
    "string", "concatenated_string",
})


def _is_target(node: Node) -> bool:
    parent = node.parent
    return parent is not None and parent.type in ("assignment", "augmented_assignment", "for_statement",
                                                  "delete_statement") and parent.child_by_field_name("left") == node


def _extract(src: Source, scopes: PyScopes, sel: _Selection) -> Refactoring:
    first, last = sel.nodes[0], sel.nodes[-1]
    inside = [u for u in scopes.uses if first.start_byte <= u.start and u.end <= last.end_byte]
    _check_control_flow(src, sel)
    scope = sel.scope
    method = _method_of(scope)
    params, returns = (_expression_names(scopes, sel, inside) if sel.expression
                       else _statement_names(src, scopes, sel, inside))
    is_async = contains(src, _wrap(sel), frozenset({"await"})) is not None
    uses_super = any(u.name == "super" and not u.bind for u in inside)
    self_name, flavour = None, None
    if method is not None:
        self_name, flavour = _method_flavour(src, method, params, uses_super)
        params = [p for p in params if p != self_name]
    elif uses_super or _has_mangled(src, sel):
        raise _Refused("the code uses `super()` or a private `__name`, which only work inside its class")
    name = fresh_name(src, "extracted")
    call = _call_text(name, params, returns, is_async, sel.expression, self_name, method)
    insert_at, base, lead, trail = placement(src, sel.nodes[0], method.node if method is not None else None)
    def_text = lead + definition(src, sel.nodes, sel.expression, name, params, returns, is_async, self_name, flavour,
                                 base) + trail
    sel_start, sel_end = src.span(first)[0], src.span(last)[1]
    edits = (Edit(insert_at, insert_at, def_text), Edit(sel_start, sel_end, call))
    target = (min(insert_at, sel_start), max(insert_at, sel_end))
    notes = [f"the new {'method' if method else 'function'} is named `{name}`"]
    if params:
        notes.append("parameters: " + ", ".join(params))
    if returns:
        notes.append("returns: " + ", ".join(returns))
    kind_word = "method" if method is not None else "function"
    return Refactoring(KIND, f"Extract {kind_word} `{name}`", edits, target, notes=tuple(notes))


def _wrap(sel: _Selection) -> Node:
    return sel.nodes[0] if len(sel.nodes) == 1 else sel.nodes[0].parent


def _check_control_flow(src: Source, sel: _Selection) -> None:
    for top in sel.nodes:
        for node in _own_nodes(top):
            kind = node.type
            if kind == "return_statement":
                raise _Refused("the code returns from the function; extract the statements around the return")
            if kind in ("yield", "yield_statement"):
                raise _Refused("the code yields: it belongs to its generator")
            if kind in ("global_statement", "nonlocal_statement"):
                raise _Refused("the code declares `global`/`nonlocal` names")
            if kind in ("break_statement", "continue_statement") and not _loop_inside(node, top):
                raise _Refused(f"`{kind.split('_')[0]}` would leave the extracted code's loop")
            if kind == "delete_statement" and any(c.type == "identifier" for c in _targets(node)):
                raise _Refused("the code deletes a variable")
            if kind == "named_expression" and sel.expression:
                raise _Refused("the expression assigns a name with `:=`")


def _own_nodes(top: Node):
    """Nodes of `top`, not descending into nested functions, lambdas or classes."""
    stack = [top]
    while stack:
        node = stack.pop()
        yield node
        if node is not top and node.type in ("function_definition", "lambda", "class_definition"):
            continue
        stack.extend(node.children)


def _targets(node: Node) -> list[Node]:
    out = []
    for child in node.named_children:
        out.extend(child.named_children if child.type == "expression_list" else [child])
    return out


def _loop_inside(node: Node, top: Node) -> bool:
    for parent in ancestors(node):
        if parent.type in _LOOPS:
            return top.start_byte <= parent.start_byte and parent.end_byte <= top.end_byte
        if parent.id == top.id:
            return False
    return False


def _local_to(scopes: PyScopes, use: Use) -> Scope | None:
    """The function-like scope (not the module) that binds the name `use` reads."""
    found = scopes.resolve(use.name, use.scope)
    return found if isinstance(found, Scope) and found.kind != "module" else None


def _expression_names(scopes: PyScopes, sel: _Selection, inside: list[Use]) -> tuple[list[str], list[str]]:
    params: list[str] = []
    for use in inside:
        if use.bind:
            continue
        owner = _local_to(scopes, use)
        if owner is not None and not _encloses_or_is(owner, use.scope, inside_of=sel.nodes[0]) \
                and use.name not in params:
            params.append(use.name)
    return params, []


def _encloses_or_is(owner: Scope, scope: Scope, inside_of: Node) -> bool:
    """Whether `owner` is a scope created inside the selected expression itself."""
    return inside_of.start_byte <= owner.node.start_byte and owner.node.end_byte <= inside_of.end_byte


def _statement_names(src: Source, scopes: PyScopes, sel: _Selection,
                     inside: list[Use]) -> tuple[list[str], list[str]]:
    scope = sel.scope
    first, last = sel.nodes[0], sel.nodes[-1]
    bindings = [u for u in inside if u.bind and u.scope is scope]
    bound_here = list(dict.fromkeys(u.name for u in bindings))
    params: list[str] = []
    for use in inside:
        if use.bind or use.name in params:
            continue
        owner = scopes.resolve(use.name, use.scope)
        if not isinstance(owner, Scope):
            continue
        if owner is not scope:
            if owner.kind != "module" and not _inside_selection(owner, first, last):
                params.append(use.name)  # a closure variable of an enclosing function
            continue
        if scope.kind == "module" and use.name not in bound_here:
            continue  # a global: the function reads it the same way
        if not is_covered(use, sel.nodes, bindings):
            params.append(use.name)
    returns = [name for name in bound_here if _read_later(src, scopes, sel, name)]
    for name in returns:
        if not any(binds_on_every_path(s, name, bindings) for s in sel.nodes) and name not in params:
            if scope.kind != "module" and not _bound_before(scope, name, first):
                raise _Refused(f"`{name}` is assigned only on some paths of the selection and has no value before it")
            params.append(name)  # the paths that do not assign it must return what it held
    for name in params:
        if scope.kind != "module" and scopes.resolve(name, scope) is scope and not _bound_before(scope, name, first):
            raise _Refused(f"`{name}` may not have a value yet when the code runs")
        if scope.kind == "module" and name in bound_here and not _bound_before(scope, name, first):
            raise _Refused(f"`{name}` may not have a value yet when the code runs")
    return params, returns


def _inside_selection(scope: Scope, first: Node, last: Node) -> bool:
    return first.start_byte <= scope.node.start_byte and scope.node.end_byte <= last.end_byte


def _bound_before(scope: Scope, name: str, first: Node) -> bool:
    return any(offset < first.start_byte for offset in scope.bindings.get(name, []))


def _read_later(src: Source, scopes: PyScopes, sel: _Selection, name: str) -> bool:
    """Whether the enclosing scope still reads `name` once the selection has run: after it,
    anywhere in a loop around it, or from a nested function (which may run any time)."""
    scope = sel.scope
    first, last = sel.nodes[0], sel.nodes[-1]
    in_loop = any(a.type in _LOOPS and scope.node.start_byte <= a.start_byte for a in ancestors(first)
                  if a.start_byte >= scope.node.start_byte)
    for use in scopes.uses:
        if use.bind or use.name != name or first.start_byte <= use.start < last.end_byte:
            continue
        if scopes.resolve(name, use.scope) is not scope:
            continue
        if use.start >= last.end_byte or in_loop or use.scope is not scope:
            return True
    if scope.kind == "module":
        return _exported(src, name)
    return False


def _exported(src: Source, name: str) -> bool:
    """Whether the module lists `name` in `__all__` (other modules read it)."""
    for node in src.root.named_children:
        text = src.node_text(node)
        if text.startswith("__all__") and (f'"{name}"' in text or f"'{name}'" in text):
            return True
    return False


def _method_of(scope: Scope) -> Scope | None:
    """The method the code is in (a function directly in a class body), if any; a
    comprehension or lambda inside the method counts as the method."""
    while scope.kind in ("comprehension", "lambda") and scope.parent is not None:
        scope = scope.parent
    return scope if scope.kind == "function" and scope.parent is not None and scope.parent.kind == "class" else None


def _decorators(src: Source, function: Node) -> set[str]:
    parent = function.parent
    if parent is None or parent.type != "decorated_definition":
        return set()
    return {src.node_text(d).lstrip("@").strip() for d in parent.named_children if d.type == "decorator"}


def _method_flavour(src: Source, method: Scope, params: list[str], uses_super: bool) -> tuple[str | None, str]:
    """(the first parameter's name, 'instance' | 'class' | 'static') of the new method."""
    decorators = _decorators(src, method.node)
    plist = method.node.child_by_field_name("parameters")
    first = next((p for p in plist.named_children if p.type == "identifier"), None) if plist is not None else None
    first_name = src.node_text(first) if first is not None else None
    if "staticmethod" in decorators or first_name is None:
        if uses_super:
            raise _Refused("the code calls `super()` in a static method")
        return None, "static"
    uses_first = first_name in params or uses_super
    if "classmethod" in decorators:
        return first_name, "class" if uses_first else "static-via-first"
    return first_name, "instance" if uses_first else "static-via-first"


def _class_path(cls: Scope) -> str:
    """How code inside the class names it: `Outer.Inner` for nested classes."""
    parts = [cls.name]
    while cls.parent is not None and cls.parent.kind == "class":
        cls = cls.parent
        parts.append(cls.name)
    return ".".join(reversed(parts))


def _has_mangled(src: Source, sel: _Selection) -> bool:
    return any(n.type == "identifier" and _MANGLED.match(src.node_text(n)) and
               n.parent is not None and n.parent.type == "attribute"
               for top in sel.nodes for n in src.walk(top))


def _call_text(name: str, params: list[str], returns: list[str], is_async: bool, expression: bool,
               self_name: str | None, method: Scope | None) -> str:
    callee = name
    if method is not None:
        callee = f"{self_name}.{name}" if self_name is not None else f"{_class_path(method.parent)}.{name}"
    call = f"{'await ' if is_async else ''}{callee}({', '.join(params)})"
    if expression or not returns:
        return call
    return f"{', '.join(returns)} = {call}"
