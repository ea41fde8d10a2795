"""JavaScript and TypeScript name binding from the syntax tree: block scopes for `let`,
`const`, `class` and function declarations, function scopes for `var` and parameters, the
module scope for imports, and every place a name is read or bound.

What is out of reach: `with`, `eval`, and globals that the runtime provides. A name nothing
in the file binds resolves to None (a global), for the old and the new text alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tree_sitter import Node

from .scopetree import ScopeTree

FUNCTIONS = frozenset({"function_declaration", "function_expression", "function", "arrow_function",
                       "method_definition", "generator_function_declaration", "generator_function"})
BLOCKS = frozenset({"statement_block", "for_statement", "for_in_statement", "catch_clause", "switch_body",
                    "class_body"})
READS = frozenset({"identifier", "shorthand_property_identifier", "type_identifier"})
# Declarations whose name binds in the enclosing block (TypeScript types included).
NAMED_DECLARATIONS = frozenset({"function_declaration", "generator_function_declaration", "class_declaration",
                                "abstract_class_declaration", "interface_declaration", "type_alias_declaration",
                                "enum_declaration"})


@dataclass(eq=False)
class JsScope:
    kind: str  # program, function, block
    node: Node
    parent: JsScope | None
    bindings: dict[str, list[int]] = field(default_factory=dict)
    children: list[JsScope] = field(default_factory=list)

    def function(self) -> JsScope:
        scope = self
        while scope.kind == "block" and scope.parent is not None:
            scope = scope.parent
        return scope

    @property
    def qualname(self) -> str:
        depth, scope = 0, self
        while scope.parent is not None:
            depth, scope = depth + 1, scope.parent
        return f"{self.kind}@{self.node.start_byte}:{depth}"


@dataclass(frozen=True, eq=False)
class JsUse:
    name: str
    start: int
    end: int
    scope: JsScope
    node: Node
    bind: bool


class JsScopes(ScopeTree[JsScope, JsUse]):
    def __init__(self, root: Node) -> None:
        super().__init__(JsScope("program", root, None))
        self._visit_children(root, self.module)

    def resolve(self, name: str, scope: JsScope) -> JsScope | None:
        current = scope
        while current is not None:
            if name in current.bindings:
                return current
            current = current.parent
        return None

    # -- building -----------------------------------------------------------------------------

    def _scope(self, kind: str, node: Node, parent: JsScope) -> JsScope:
        scope = JsScope(kind, node, parent)
        parent.children.append(scope)
        return scope

    def _use(self, node: Node, scope: JsScope, bind: bool) -> None:
        name = node.text.decode("utf-8")
        self.uses.append(JsUse(name, node.start_byte, node.end_byte, scope, node, bind))
        if bind:
            scope.bindings.setdefault(name, []).append(node.start_byte)

    def _visit_children(self, node: Node, scope: JsScope, skip: tuple[Node | None, ...] = ()) -> None:
        ids = {n.id for n in skip if n is not None}
        for child in node.named_children:
            if child.id not in ids:
                self._visit(child, scope)

    def _visit(self, node: Node, scope: JsScope) -> None:  # noqa: C901 - one branch per construct
        kind = node.type
        if kind in READS:
            self._use(node, scope, bind=False)
        elif kind in FUNCTIONS:
            self._function(node, scope)
        elif kind in NAMED_DECLARATIONS or kind in ("class", "class_expression"):
            name = node.child_by_field_name("name")
            inner = scope
            if kind in ("class", "class_expression") and name is not None:
                inner = self._scope("block", node, scope)  # a class expression's name is its own
            if name is not None:
                self._use(name, inner, bind=True)
            self._visit_children(node, inner if kind.startswith("class") else scope, skip=(name,))
        elif kind in BLOCKS:
            inner = self._scope("block", node, scope)
            declared = None
            if kind == "for_in_statement" and node.child_by_field_name("kind") is not None:
                declared = node.child_by_field_name("left")  # for (const x of xs)
                var = node.child_by_field_name("kind").text == b"var"
                self._pattern(declared, inner.function() if var else inner, inner)
            elif kind == "catch_clause":
                declared = node.child_by_field_name("parameter")
                self._pattern(declared, inner, inner)
            self._visit_children(node, inner, skip=(declared,))
        elif kind == "variable_declarator":
            declaration = node.parent
            target = scope.function() if declaration is not None and declaration.type == "variable_declaration" \
                else scope
            self._pattern(node.child_by_field_name("name"), target, scope)
            value = node.child_by_field_name("value")
            if value is not None:
                self._visit(value, scope)
            self._visit_children(node, scope, skip=(node.child_by_field_name("name"), value))
        elif kind == "import_statement":
            for clause in node.named_children:
                if clause.type == "import_clause":
                    self._import_clause(clause)
        elif kind in ("member_expression", "subscript_expression"):
            self._visit_children(node, scope, skip=(node.child_by_field_name("property"),)
                                 if kind == "member_expression" else ())
        elif kind in ("pair", "pair_pattern", "public_field_definition", "field_definition", "method_signature",
                      "property_signature"):
            keys = (node.child_by_field_name("key"), node.child_by_field_name("name"),
                    node.child_by_field_name("property"))
            self._visit_children(node, scope, skip=tuple(k for k in keys if k is not None and k.type != "computed_property_name"))
        elif kind in ("labeled_statement", "break_statement", "continue_statement"):
            self._visit_children(node, scope, skip=(node.child_by_field_name("label"),))
        elif kind == "type_parameter":
            name = node.child_by_field_name("name")
            if name is not None:
                self._use(name, scope, bind=True)
            self._visit_children(node, scope, skip=(name,))
        elif kind in ("jsx_attribute", "nested_identifier", "export_specifier"):
            first = node.named_children[0] if node.named_children else None
            if kind == "export_specifier" and first is not None:
                self._visit(first, scope)  # `export { a as b }` reads a
            elif kind == "nested_identifier" and first is not None:
                self._visit(first, scope)
            else:
                self._visit_children(node, scope, skip=(first,))
        else:
            self._visit_children(node, scope)

    def _function(self, node: Node, scope: JsScope) -> None:
        name = node.child_by_field_name("name")
        if name is not None and node.type in ("function_declaration", "generator_function_declaration"):
            self._use(name, scope, bind=True)
        inner = self._scope("function", node, scope)
        if name is not None and node.type in ("function_expression", "function", "generator_function"):
            self._use(name, inner, bind=True)  # a function expression's name is visible inside only
        params = node.child_by_field_name("parameters")
        single = node.child_by_field_name("parameter")  # `x => ...`
        if single is not None:
            self._use(single, inner, bind=True)
        if params is not None:
            for param in params.named_children:
                self._parameter(param, inner)
        body = node.child_by_field_name("body")
        skip = (name, params, single, body)
        self._visit_children(node, inner, skip=skip)  # type parameters, return type
        if body is not None:
            if body.type == "statement_block":
                self._visit_children(body, inner)
            else:
                self._visit(body, inner)

    def _parameter(self, param: Node, scope: JsScope) -> None:
        if param.type in ("required_parameter", "optional_parameter"):
            pattern = param.child_by_field_name("pattern")
            self._pattern(pattern, scope, scope)
            self._visit_children(param, scope, skip=(pattern,))
        else:
            self._pattern(param, scope, scope)

    def _pattern(self, node: Node | None, target: JsScope, scope: JsScope) -> None:
        """Bind the names of a declaration pattern in `target`; defaults are read in `scope`."""
        if node is None:
            return
        kind = node.type
        if kind in ("identifier", "shorthand_property_identifier_pattern"):
            self._use(node, target, bind=True)
        elif kind in ("object_pattern", "array_pattern", "rest_pattern"):
            for child in node.named_children:
                self._pattern(child, target, scope)
        elif kind == "pair_pattern":
            key = node.child_by_field_name("key")
            if key is not None and key.type == "computed_property_name":
                self._visit(key, scope)
            self._pattern(node.child_by_field_name("value"), target, scope)
        elif kind in ("assignment_pattern", "object_assignment_pattern"):
            self._pattern(node.child_by_field_name("left"), target, scope)
            right = node.child_by_field_name("right")
            if right is not None:
                self._visit(right, scope)
        else:
            self._visit(node, scope)  # this, member expressions in destructuring assignments

    def _import_clause(self, clause: Node) -> None:
        for child in clause.named_children:
            if child.type == "identifier":
                self._use(child, self.module, bind=True)
            elif child.type == "namespace_import":
                for ident in child.named_children:
                    if ident.type == "identifier":
                        self._use(ident, self.module, bind=True)
            elif child.type == "named_imports":
                for spec in child.named_children:
                    if spec.type != "import_specifier":
                        continue
                    local = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                    if local is not None and local.type == "identifier":
                        self._use(local, self.module, bind=True)


def js_scopes(src) -> JsScopes:
    """The scopes of a `Source`, analysed once per text."""
    return src.memo("jsscopes", lambda s: JsScopes(s.root))
