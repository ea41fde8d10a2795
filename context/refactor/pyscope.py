"""Python name binding from the syntax tree: which scope binds each name, and where every
name is read and bound (byte offsets of the tree).

It follows the language's rules where they decide what a refactor may do: function, lambda,
class and comprehension scopes; class bodies invisible to the scopes nested in them; the
first iterable of a comprehension evaluated outside it; `global`/`nonlocal`; walrus targets
binding in the enclosing function; default values, decorators and annotations evaluated
where the definition is. Dynamic tricks (`exec`, `locals()`, `from m import *` names) are out
of reach: a name nothing binds resolves to a star import when the module has one.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from tree_sitter import Node

from .scopetree import ScopeTree

BUILTIN_NAMES = frozenset(dir(builtins)) | {
    "__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__", "__path__",
    "__annotations__", "__dict__", "__module__", "__qualname__", "__class__", "__debug__",
}
COMPREHENSIONS = frozenset({"list_comprehension", "set_comprehension", "dictionary_comprehension",
                            "generator_expression"})
FUNCTION_KINDS = frozenset({"function", "lambda"})
_SEQUENCE_TARGETS = frozenset({"pattern_list", "tuple_pattern", "list_pattern", "tuple", "list",
                               "parenthesized_expression", "expression_list"})


@dataclass(eq=False)
class Scope:
    kind: str  # module, function, lambda, class, comprehension
    node: Node
    parent: Scope | None
    name: str
    bindings: dict[str, list[int]] = field(default_factory=dict)  # name -> byte offsets bound at
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)
    children: list[Scope] = field(default_factory=list)
    star_import: bool = False

    @property
    def qualname(self) -> str:
        parts, scope = [], self
        while scope is not None and scope.kind != "module":
            parts.append(scope.name)
            scope = scope.parent
        return ".".join(reversed(parts)) or "<module>"

    def binds(self, name: str) -> bool:
        """Whether `name` is local to this scope."""
        return name in self.bindings and name not in self.globals and name not in self.nonlocals

    def function(self) -> Scope:
        """The nearest enclosing scope that is not a comprehension (walrus targets bind there)."""
        scope = self
        while scope.kind == "comprehension" and scope.parent is not None:
            scope = scope.parent
        return scope


@dataclass(frozen=True, eq=False)
class Use:
    name: str
    start: int  # byte offsets of the identifier
    end: int
    scope: Scope
    node: Node
    bind: bool  # a binding (assignment target, parameter, import, def, ...) rather than a read


BUILTINS = "<builtins>"
STAR = "<star import>"


class PyScopes(ScopeTree[Scope, Use]):
    """Every scope of one module and every use of a name in it."""

    def __init__(self, root: Node) -> None:
        super().__init__(Scope("module", root, None, "<module>"))
        self._resolved: dict[tuple[str, int], Scope | str | None] = {}
        self._visit_block(root, self.module)

    # -- queries ----------------------------------------------------------------------------

    def resolve(self, name: str, scope: Scope) -> Scope | str | None:
        """The scope binding `name` as read from `scope`, BUILTINS, STAR, or None."""
        key = (name, id(scope))
        if key not in self._resolved:
            self._resolved[key] = self._resolve(name, scope)
        return self._resolved[key]

    def _resolve(self, name: str, scope: Scope) -> Scope | str | None:
        current, first = scope, True
        while current is not None:
            if name in current.globals:
                return self._module_or_builtin(name)
            if current.binds(name) and (current.kind != "class" or first):
                return current
            first = False
            current = current.parent
        return self._fallback(name)

    def _module_or_builtin(self, name: str) -> Scope | str | None:
        return self.module if name in self.module.bindings else self._fallback(name)

    def _fallback(self, name: str) -> str | None:
        if name in BUILTIN_NAMES:
            return BUILTINS
        return STAR if self.module.star_import else None

    def scope_of(self, node: Node) -> Scope:
        """The innermost scope whose body holds `node`."""
        best = self.module
        stack = [self.module]
        while stack:
            scope = stack.pop()
            for child in scope.children:
                body = _scope_body(child.node)
                if body.start_byte <= node.start_byte and node.end_byte <= body.end_byte:
                    best = child
                    stack.append(child)
        return best

    # -- building -----------------------------------------------------------------------------

    def _scope(self, kind: str, node: Node, parent: Scope, name: str) -> Scope:
        scope = Scope(kind, node, parent, name)
        parent.children.append(scope)
        return scope

    def _use(self, node: Node, scope: Scope, bind: bool) -> None:
        name = node.text.decode("utf-8")
        self.uses.append(Use(name, node.start_byte, node.end_byte, scope, node, bind))
        if bind:
            scope.bindings.setdefault(name, []).append(node.start_byte)
            if name in scope.globals and scope is not self.module:
                self.module.bindings.setdefault(name, []).append(node.start_byte)

    def _visit_block(self, node: Node, scope: Scope) -> None:
        for child in node.named_children:
            self._visit(child, scope)

    def _visit(self, node: Node, scope: Scope) -> None:  # noqa: C901 - one branch per construct
        kind = node.type
        if kind == "identifier":
            self._use(node, scope, bind=False)
        elif kind == "function_definition":
            self._function(node, scope)
        elif kind == "lambda":
            inner = self._scope("lambda", node, scope, "<lambda>")
            self._parameters(node.child_by_field_name("parameters"), scope, inner)
            self._visit_opt(node.child_by_field_name("body"), inner)
        elif kind == "class_definition":
            self._class(node, scope)
        elif kind in COMPREHENSIONS:
            self._comprehension(node, scope)
        elif kind == "assignment":
            self._target(node.child_by_field_name("left"), scope)
            self._visit_opt(node.child_by_field_name("type"), scope)
            self._visit_opt(node.child_by_field_name("right"), scope)
        elif kind == "augmented_assignment":
            left = node.child_by_field_name("left")
            if left is not None and left.type == "identifier":
                self._use(left, scope, bind=False)
            self._target(left, scope)
            self._visit_opt(node.child_by_field_name("right"), scope)
        elif kind in ("for_statement", "for_in_clause"):
            self._visit_opt(node.child_by_field_name("right"), scope)
            self._target(node.child_by_field_name("left"), scope)
            for child in node.named_children:
                if child.id not in (_id(node.child_by_field_name("left")), _id(node.child_by_field_name("right"))):
                    self._visit(child, scope)
        elif kind == "as_pattern":
            alias = node.child_by_field_name("alias")
            for child in node.named_children:
                if alias is not None and child.id == alias.id:
                    self._target(child, scope)
                elif child.type == "identifier" and node.parent is not None and node.parent.type == "case_pattern":
                    self._use(child, scope, bind=True)
                else:
                    self._visit(child, scope)
        elif kind in ("import_statement", "import_from_statement", "future_import_statement"):
            self._import(node, scope)
        elif kind in ("global_statement", "nonlocal_statement"):
            names = {c.text.decode("utf-8") for c in node.named_children if c.type == "identifier"}
            (scope.globals if kind == "global_statement" else scope.nonlocals).update(names)
        elif kind == "named_expression":
            self._visit_opt(node.child_by_field_name("value"), scope)
            name = node.child_by_field_name("name")
            if name is not None:
                self._use(name, scope.function(), bind=True)
        elif kind == "delete_statement":
            for child in node.named_children:
                self._target(child, scope, read_too=True)
        elif kind == "keyword_argument":
            self._visit_opt(node.child_by_field_name("value"), scope)
        elif kind == "attribute":
            self._visit_opt(node.child_by_field_name("object"), scope)
        elif kind == "case_pattern":
            self._case_pattern(node, scope)
        elif kind == "keyword_pattern":  # `x=pattern`: the keyword is an attribute name
            self._pattern_parts(node.named_children[1:], scope)
        elif kind == "splat_pattern":
            for child in node.named_children:
                if child.type == "identifier" and child.text != b"_":
                    self._use(child, scope, bind=True)
        elif kind == "dotted_name":  # `a.b.c` in a pattern or decorator reads `a` only
            if node.named_children:
                self._visit(node.named_children[0], scope)
        else:
            self._visit_block(node, scope)

    def _visit_opt(self, node: Node | None, scope: Scope) -> None:
        if node is not None:
            self._visit(node, scope)

    def _function(self, node: Node, scope: Scope) -> None:
        name = node.child_by_field_name("name")
        inner = self._scope("function", node, scope, name.text.decode("utf-8") if name else "<function>")
        self._parameters(node.child_by_field_name("parameters"), scope, inner)
        self._visit_opt(node.child_by_field_name("return_type"), scope)
        if name is not None:
            self._use(name, scope, bind=True)
        self._visit_opt(node.child_by_field_name("body"), inner)

    def _class(self, node: Node, scope: Scope) -> None:
        name = node.child_by_field_name("name")
        self._visit_opt(node.child_by_field_name("superclasses"), scope)
        inner = self._scope("class", node, scope, name.text.decode("utf-8") if name else "<class>")
        if name is not None:
            self._use(name, scope, bind=True)
        self._visit_opt(node.child_by_field_name("body"), inner)

    def _parameters(self, params: Node | None, outer: Scope, inner: Scope) -> None:
        """Defaults and annotations are evaluated outside; the names bind inside."""
        if params is None:
            return
        for param in params.named_children:
            if param.type == "identifier":
                self._use(param, inner, bind=True)
                continue
            for part in param.named_children:
                field_name = _field(param, part)
                if field_name in ("value", "type"):
                    self._visit(part, outer)
                elif part.type == "identifier":
                    self._use(part, inner, bind=True)
                elif part.type in ("list_splat_pattern", "dictionary_splat_pattern", "tuple_pattern"):
                    for ident in part.named_children:
                        if ident.type == "identifier":
                            self._use(ident, inner, bind=True)

    def _comprehension(self, node: Node, scope: Scope) -> None:
        inner = self._scope("comprehension", node, scope, "<comprehension>")
        clauses = [c for c in node.named_children if c.type == "for_in_clause"]
        for child in node.named_children:
            if clauses and child.id == clauses[0].id:
                self._visit_opt(child.child_by_field_name("right"), scope)  # evaluated outside
                self._target(child.child_by_field_name("left"), inner)
                right = child.child_by_field_name("right")
                for part in child.named_children:
                    if part.id not in (_id(child.child_by_field_name("left")), _id(right)):
                        self._visit(part, inner)
            else:
                self._visit(child, inner)

    def _target(self, node: Node | None, scope: Scope, read_too: bool = False) -> None:
        if node is None:
            return
        if node.type == "identifier":
            if read_too:
                self._use(node, scope, bind=False)
            self._use(node, scope, bind=True)
        elif node.type in _SEQUENCE_TARGETS or node.type in ("list_splat_pattern", "list_splat",
                                                             "as_pattern_target"):
            for child in node.named_children:
                self._target(child, scope, read_too)
        else:  # attribute, subscript: their objects are read
            self._visit(node, scope)

    def _import(self, node: Node, scope: Scope) -> None:
        if node.type == "future_import_statement":
            return
        is_from = node.type == "import_from_statement"
        module = node.child_by_field_name("module_name")
        for child in node.named_children:
            if module is not None and child.id == module.id:
                continue
            if child.type == "wildcard_import":
                scope.star_import = True
            elif child.type == "aliased_import":
                self._use(child.child_by_field_name("alias"), scope, bind=True)
            elif child.type == "dotted_name":
                # `import a.b` binds `a`; `from m import a` binds `a`
                self._use(child.named_children[0] if not is_from else child.named_children[-1], scope, bind=True)

    def _case_pattern(self, node: Node, scope: Scope) -> None:
        self._pattern_parts(node.named_children, scope)

    def _pattern_parts(self, nodes: list[Node], scope: Scope) -> None:
        """Parts of a `case` pattern: a bare name captures (binds), a dotted name is a value."""
        for child in nodes:
            parts = child.named_children if child.type == "dotted_name" else []
            if len(parts) == 1 and parts[0].text != b"_":
                self._use(parts[0], scope, bind=True)
            else:
                self._visit(child, scope)


def _id(node: Node | None) -> int | None:
    return node.id if node is not None else None


def _field(parent: Node, child: Node) -> str | None:
    for i, c in enumerate(parent.children):
        if c.id == child.id:
            return parent.field_name_for_child(i)
    return None


def _scope_body(node: Node) -> Node:
    """The part of a scope's node that the scope's own names cover (a definition's body)."""
    if node.type in COMPREHENSIONS:
        return node
    return node.child_by_field_name("body") or node


def python_scopes(src) -> PyScopes:
    """The scopes of a `Source`, analysed once per text."""
    return src.memo("pyscopes", lambda s: PyScopes(s.root))
