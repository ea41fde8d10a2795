"""Change impact: call sites left behind when a function's signature changes.

The signature of each function in HEAD is compared with the working tree (or an open buffer).
For every function whose parameters changed, call sites in the files that import the changed
file (or share its folder, for Go and Java packages) are checked against both signatures; a
call that matched the old signature and does not match the new one is reported. Python calls
are checked by positional count, keyword names and required parameters; other languages by
argument count (Java overloads: a call matching any overload of the name is fine).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tree_sitter import Node, Tree

from .analyze import _prefix
from .metrics import function_name
from .rules import RULES, LangRules


@dataclass(frozen=True)
class Signature:
    qualname: str
    positional: tuple[tuple[str, bool], ...]  # (name, has default), in order
    keyword_only: tuple[tuple[str, bool], ...]
    varargs: bool
    varkw: bool
    is_method: bool
    text: str  # the parameter list as written

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1].rsplit("::", 1)[-1]

    def shape(self) -> tuple:
        return (self.positional, self.keyword_only, self.varargs, self.varkw)


@dataclass(frozen=True)
class CallSite:
    node: Node
    positional: int
    keywords: tuple[str, ...]
    unpacked: bool  # *args / **kwargs / spread at the call: arity unknown
    bound: bool  # called through an object (`x.m()`): a method's receiver is implicit


_NO_DEFINITIONS = frozenset({
    "expression_statement", "assignment", "call", "call_expression", "dictionary", "list", "tuple", "set",
    "string", "binary_expression", "object", "array", "return_statement", "argument_list", "arguments",
    "lexical_declaration", "variable_declaration", "import_statement", "import_from_statement", "comment",
    "preproc_include", "use_declaration", "import_declaration", "initializer_list", "concatenated_string",
})
_PY_SKIP = frozenset({"keyword_separator", "positional_separator", "(", ")", ",", "comment"})


def _python_params(params: Node) -> tuple[list, list, bool, bool]:
    positional, keyword_only, varargs, varkw = [], [], False, False
    after_star = False
    for child in params.named_children:
        kind = child.type
        if kind == "keyword_separator":
            after_star = True
            continue
        if kind in _PY_SKIP:
            continue
        inner = child.named_children[0] if kind == "typed_parameter" and child.named_children else child
        if inner.type == "list_splat_pattern":
            varargs, after_star = True, True
            continue
        if inner.type == "dictionary_splat_pattern":
            varkw = True
            continue
        name_node = child.child_by_field_name("name") if "default" in kind else inner
        name = name_node.text.decode("utf-8", "replace") if name_node is not None else "?"
        (keyword_only if after_star else positional).append((name, "default" in kind))
    return positional, keyword_only, varargs, varkw


def _generic_params(params: Node, rules: LangRules) -> tuple[list, list, bool, bool]:
    positional, varargs = [], False
    for child in params.named_children:
        kind = child.type
        if kind in ("rest_pattern", "variadic_parameter_declaration", "spread_parameter", "variadic_parameter") \
                or b"..." in child.text:
            varargs = True
            continue
        if kind == "self_parameter" or kind not in rules.parameters:
            continue
        optional = kind in ("assignment_pattern", "optional_parameter", "optional_parameter_declaration") or (
            kind == "required_parameter" and child.child_by_field_name("value") is not None)
        names = child.children_by_field_name("name") if kind == "parameter_declaration" else []
        for _ in (names if len(names) > 1 else [child]):
            positional.append(("", optional))
    return positional, [], varargs, False


def signatures(lang: str, tree: Tree) -> dict[str, list[Signature]]:
    """Signatures of the named functions in a file, by qualified name (overloads share a name)."""
    rules = RULES.get(lang)
    found: dict[str, list[Signature]] = {}
    if rules is None:
        return found
    stack: list[tuple[Node, Node | None]] = [(tree.root_node, None)]
    while stack:
        node, owner = stack.pop()
        if node.type in rules.classes:
            owner = node
        elif node.type in rules.functions and node.child_by_field_name("body") is not None:
            sig = _signature(node, lang, rules, owner)
            if sig is not None:
                found.setdefault(sig.qualname, []).append(sig)
            continue  # nested functions are not callable from elsewhere
        elif node.type in _NO_DEFINITIONS:
            continue  # data and expressions: no named function can hide there
        stack.extend((c, owner) for c in node.children)
    return found


def _signature(fn: Node, lang: str, rules: LangRules, owner: Node | None) -> Signature | None:
    name = function_name(fn)
    params = fn.child_by_field_name("parameters")
    declarator = fn.child_by_field_name("declarator")
    while params is None and declarator is not None:
        params = declarator.child_by_field_name("parameters")
        declarator = declarator.child_by_field_name("declarator")
    if name is None or params is None:
        return None
    qualname = _prefix(fn, owner, lang) + name.text.decode("utf-8", "replace")
    is_method = owner is not None or lang in ("go", "rust") and _prefix(fn, owner, lang) != ""
    if lang == "python":
        positional, keyword_only, varargs, varkw = _python_params(params)
        decorators = fn.parent.text if fn.parent is not None and fn.parent.type == "decorated_definition" else b""
        if is_method and positional and b"@staticmethod" not in decorators:
            positional = positional[1:]  # self / cls is bound at the call
    else:
        positional, keyword_only, varargs, varkw = _generic_params(params, rules)
    text = params.text.decode("utf-8", "replace")
    return Signature(qualname, tuple(positional), tuple(keyword_only), varargs, varkw, is_method, text)


def call_sites(lang: str, tree: Tree, name: str) -> list[CallSite]:
    """Calls in a file whose callee is `name` or `something.name`."""
    rules = RULES.get(lang)
    if rules is None:
        return []
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type not in rules.calls:
            continue
        callee, bound = _callee(node)
        if callee != name:
            continue
        args = node.child_by_field_name("arguments")
        if args is None:
            continue
        positional, keywords, unpacked = 0, [], False
        for arg in args.named_children:
            if arg.type in ("keyword_argument",):
                key = arg.child_by_field_name("name")
                keywords.append(key.text.decode("utf-8", "replace") if key is not None else "")
            elif arg.type in ("list_splat", "dictionary_splat", "spread_element") or arg.text.startswith(b"..."):
                unpacked = True
            elif arg.type != "comment":
                positional += 1
        found.append(CallSite(node, positional, tuple(keywords), unpacked, bound))
    return found


def _callee(call: Node) -> tuple[str | None, bool]:
    fn = call.child_by_field_name("function")
    if fn is None:  # Java method_invocation
        name = call.child_by_field_name("name")
        return (name.text.decode("utf-8", "replace") if name is not None else None,
                call.child_by_field_name("object") is not None)
    if fn.type in ("identifier", "field_identifier"):
        return fn.text.decode("utf-8", "replace"), False
    for field in ("attribute", "property", "field", "name"):
        attr = fn.child_by_field_name(field)
        if attr is not None:
            return attr.text.decode("utf-8", "replace"), True
    return None, False


def accepts(sig: Signature, call: CallSite) -> str | None:
    """None when the call fits the signature, else why not."""
    if call.unpacked:
        return None
    names = {n for n, _ in sig.positional} | {n for n, _ in sig.keyword_only}
    if call.positional > len(sig.positional) and not sig.varargs:
        return f"{call.positional} positional arguments given, at most {len(sig.positional)} accepted"
    for key in call.keywords:
        if key not in names and not sig.varkw:
            return f"no parameter named {key!r}"
    given = set(call.keywords)  # positions are covered by index, names by keyword
    missing = [n or f"#{i + 1}" for i, (n, default) in enumerate(sig.positional)
               if i >= call.positional and not default and not (n and n in given)]
    missing += [n for n, default in sig.keyword_only if not default and n not in given]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class SignatureChange:
    path: str
    old: Signature
    new: Signature


def changed_signatures(path: str, old: dict[str, list[Signature]], new: dict[str, list[Signature]]) -> list[SignatureChange]:
    changes = []
    for qualname, new_sigs in new.items():
        old_sigs = old.get(qualname)
        if not old_sigs or len(old_sigs) != 1 or len(new_sigs) != 1:
            continue  # new, removed or overloaded: no single "before" to compare with
        if old_sigs[0].shape() != new_sigs[0].shape():
            changes.append(SignatureChange(path, old_sigs[0], new_sigs[0]))
    return changes


def callers(changed: str, importers: Mapping[str, Iterable[str]], files: Iterable[str]) -> list[str]:
    """Files that may call into `changed`: its importers, and its folder for package languages."""
    folder = posixpath.dirname(changed)
    same_package = changed.endswith((".go", ".java"))
    return sorted(p for p in files if p != changed and (
        changed in importers.get(p, ()) or (same_package and posixpath.dirname(p) == folder)))


def impacted_calls(change: SignatureChange, lang: str, tree: Tree, overloads: list[Signature] = ()) -> list[tuple[CallSite, str]]:
    """Calls in one file that fit the old signature but not the new one (nor any overload)."""
    found = []
    for call in call_sites(lang, tree, change.new.name):
        if lang == "python" and change.new.is_method and not call.bound:
            continue  # a plain call of the same name is some other function
        if accepts(change.old, call) is not None:
            continue  # it did not fit before either: not this change's doing
        reason = accepts(change.new, call)
        if reason is not None and all(accepts(o, call) is not None for o in overloads):
            found.append((call, reason))
    return found
