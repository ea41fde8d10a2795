"""Verification of every edit before it is offered, deterministic or model-made.

An edit passes when all of these hold for the file it would produce:
1. only the target range changed (the text before and after it is untouched);
2. it parses without error nodes (and the file did before: no refactor on broken code);
3. no definition outside the target appeared or vanished, and nothing inside it re-declares
   a definition outside it;
4. every name the rest of the file reads still resolves, to the same scope, and the new code
   reads no name that nothing defines (Python, JavaScript, TypeScript);
5. the inserted text writes no secret-looking string (a key, token or password, counting the
   text around it; the same detector that redacts prompts);
6. a model rewrite kept its promise: adding a docstring changes nothing but docstrings and
   comments, adding type hints nothing but annotations;
7. a Python file that Python itself compiled before still compiles (tree-sitter accepts an
   empty block, `class A:` with no body, which Python refuses).
The first rule that fails is the reason the action is offered without an edit.
"""

from __future__ import annotations

from collections import Counter

from tree_sitter import Node

from ..languages import Languages
from ..privacy import REDACTED, inserted_secret
from ..symbols import Definition, definitions_of
from .edits import Refactoring, apply_edits
from .jsscope import JsScopes, js_scopes
from .pyscope import PyScopes, python_scopes
from .source import JS_FAMILY, Source

_DOCSTRING_PARENTS = frozenset({"module", "block"})


def verify(src: Source, refactoring: Refactoring, languages: Languages) -> Refactoring:
    """`refactoring` unchanged when its edits pass every rule, else refused with the reason."""
    if not refactoring.offered:
        return refactoring
    try:
        reason = problem(src, refactoring, languages)
    except RecursionError:
        reason = "the code is nested too deeply to verify the edit"
    return refactoring if reason is None else refactoring.refused(reason)


def problem(src: Source, refactoring: Refactoring, languages: Languages) -> str | None:
    old = src.text
    try:
        new_text = apply_edits(old, refactoring.edits)
    except ValueError as exc:
        return str(exc)
    if new_text == old:
        return "the edit changes nothing"
    t0, t1 = refactoring.target
    kept = len(old) - t1
    if new_text[:t0] != old[:t0] or new_text[len(new_text) - kept:] != old[t1:] or len(new_text) < t0 + kept:
        changed = next((i for i in range(min(t0, len(new_text))) if new_text[i] != old[i]), t1)
        return f"the edit changes text outside its target (line {old.count(chr(10), 0, changed) + 1})"
    if src.root.has_error:
        return f"the file has a syntax error (line {_first_error(src.root).start_point.row + 1}); fix it first"
    new = Source(new_text, src.language, languages)
    if new.root.has_error:
        return f"the result would not parse (syntax error at line {_first_error(new.root).start_point.row + 1})"
    span = _Span(src, new, t0, t1)
    return (_definitions_problem(src, new, span, languages) or _names_problem(src, new, span)
            or _secrets_problem(old, refactoring) or _promise_problem(src, new, span, refactoring.preserve)
            or _compile_problem(src.language, old, new_text))


def _compile_problem(language: str, old: str, new: str) -> str | None:
    if language == "python" and (refused := _python_refuses(new)) and not _python_refuses(old):
        return f"the result would not parse ({refused})"
    return None


class _Span:
    """The target in both texts, in rows and bytes; a new offset maps back to the old one."""

    def __init__(self, old: Source, new: Source, t0: int, t1: int) -> None:
        delta = len(new.text) - len(old.text)
        self.old_rows = (old.text.count("\n", 0, t0), old.text.count("\n", 0, t1))
        self.new_rows = (new.text.count("\n", 0, t0), new.text.count("\n", 0, t1 + delta))
        self.old_bytes = (old.byte(t0), old.byte(t1))
        self.new_bytes = (new.byte(t0), new.byte(t1 + delta))
        self.byte_delta = len(new.data) - len(old.data)
        self.row_delta = self.new_rows[1] - self.old_rows[1]

    def old_byte(self, new_byte: int) -> int | None:
        """The old offset of a new byte outside the target, None inside it."""
        if new_byte < self.new_bytes[0]:
            return new_byte
        if new_byte >= self.new_bytes[1]:
            return new_byte - self.byte_delta
        return None


def _python_refuses(text: str) -> str | None:
    """Why Python's compiler rejects `text` (line and message), or None when it compiles."""
    try:
        compile(text, "<edit>", "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError included
        return f"{exc.msg} at line {exc.lineno}"
    except ValueError as exc:  # e.g. a null byte
        return str(exc)
    return None


def _first_error(node: Node) -> Node:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "ERROR" or current.is_missing:
            return current
        stack.extend(reversed([c for c in current.children if c.has_error or c.is_missing or c.type == "ERROR"]))
    return node


# -- rule 3: definitions ---------------------------------------------------------------------

def _qualified(definitions: list[Definition]) -> list[tuple[str, str, Definition]]:
    """(qualified name, kind, definition): names of the definitions enclosing each one.

    One pass over the definitions in (start, longest first) order with a stack of the open
    ones (tree nodes nest), linear in their number: comparing every pair took minutes for a
    file of 20,000 module-level assignments."""
    def key(d: Definition) -> tuple[int, int]:
        return d.start_line, -d.end_line

    names: dict[int, str] = {}
    stack: list[Definition] = []
    for d in sorted(definitions, key=key):
        while stack and not (stack[-1].start_line <= d.start_line and d.end_line <= stack[-1].end_line):
            stack.pop()
        outer = [o.name for o in stack if key(o) < key(d)]
        names[id(d)] = ".".join([*outer, d.name])
        stack.append(d)
    return [(names[id(d)], d.kind, d) for d in definitions]


def _definitions_problem(old: Source, new: Source, span: _Span, languages: Languages) -> str | None:
    before = old.memo("definitions", lambda s: _qualified(definitions_of(s.tree, s.language, languages)))
    after = _qualified(definitions_of(new.tree, new.language, languages))

    def inside(d: Definition, rows: tuple[int, int]) -> bool:
        return rows[0] <= d.start_line and d.end_line <= rows[1]

    old_outside = Counter((q, k) for q, k, d in before if not inside(d, span.old_rows))
    new_outside = Counter((q, k) for q, k, d in after if not inside(d, span.new_rows))
    if old_outside != new_outside:
        gone = sorted(old_outside - new_outside)
        added = sorted(new_outside - old_outside)
        if gone:
            return f"the edit removes or renames `{gone[0][0]}`, defined outside the edited range"
        return f"the edit adds a definition of `{added[0][0]}` outside the edited range"
    outside_names = {q for q, _ in new_outside}
    old_inside = Counter(q for q, _, d in before if inside(d, span.old_rows))
    for q, _, d in after:
        if inside(d, span.new_rows) and q in outside_names and old_inside[q] == 0:
            return f"the edit re-declares `{q}` (line {d.start_line + 1}), which is defined elsewhere in the file"
    return None


# -- rule 4: names -----------------------------------------------------------------------------

def _reads(src: Source) -> list[tuple[int, str, tuple | str | None]]:
    """(byte offset, name, what it resolves to) of every read: a scope as (kind, start byte,
    end byte), or "<builtins>", "<star import>", None."""
    return src.memo("reads", _resolve_reads)


def _resolve_reads(src: Source) -> list[tuple[int, str, tuple | str | None]]:
    out: list[tuple[int, str, tuple | str | None]] = []
    scopes: PyScopes | JsScopes = python_scopes(src) if src.language == "python" else js_scopes(src)
    for use in scopes.reads:
        found = scopes.resolve(use.name, use.scope)
        if found is not None and not isinstance(found, str):
            found = (found.kind, found.node.start_byte, found.node.end_byte)
        out.append((use.start, use.name, found))
    return out


def _identity(found: tuple | str, bounds: tuple[int, int], shift: int) -> tuple | str:
    """A resolved scope as the same key in the old and the new text: by its start when it
    starts before the target, else by its end when it ends after it (shifted back to the old
    text), else it lies inside the target."""
    if isinstance(found, str):
        return found
    kind, start, end = found
    if start < bounds[0]:
        return kind, "start", start
    if end >= bounds[1]:
        return kind, "end", end - shift
    return kind, "inside"


def _names_problem(old: Source, new: Source, span: _Span) -> str | None:
    if old.language != "python" and old.language not in JS_FAMILY:
        return None
    old_reads = _reads(old)
    old_at = old.memo("reads_at", lambda s: {(offset, name): found for offset, name, found in old_reads})
    known_inside = {name for offset, name, found in old_reads
                    if span.old_bytes[0] <= offset < span.old_bytes[1] and found is not None}
    unresolved_before = old.memo("unresolved", lambda s: {name for _, name, found in old_reads if found is None})
    for offset, name, found in _reads(new):
        mapped = span.old_byte(offset)
        if mapped is None:  # the new code
            if found is None and (name in known_inside or (new.language == "python" and name not in unresolved_before)):
                return f"the new code reads `{name}` (line {_line(new, offset)}), which nothing defines there"
            continue
        before = old_at.get((mapped, name))
        if before is None:
            continue
        if found is None:
            return f"`{name}` at line {_line(new, offset)} would no longer be defined"
        if _identity(found, span.new_bytes, span.byte_delta) != _identity(before, span.old_bytes, 0):
            return f"`{name}` at line {_line(new, offset)} would refer to something else"
    return None


def _line(src: Source, byte: int) -> int:
    return src.data.count(b"\n", 0, byte) + 1


# -- rule 5: secrets ----------------------------------------------------------------------------

def _secrets_problem(old: str, refactoring: Refactoring) -> str | None:
    if any(_writes_secret(old, edit.start, edit.end, edit.text) for edit in refactoring.edits):
        return "the edit would write secret-looking text (a key, token or password)"
    # The model saw the code with its secrets redacted; copying the marker back would replace a
    # real value in the file with the placeholder.
    if any(REDACTED in edit.text and REDACTED not in old[edit.start:edit.end] for edit in refactoring.edits):
        return f"the edit would write the redaction marker {REDACTED} in place of a value the model never saw"
    return None


def _writes_secret(text: str, start: int, end: int, inserted: str) -> bool:
    """Whether replacing text[start:end] with `inserted` writes secret-looking text: the one
    place verification asks the detector that redacts prompts."""
    return inserted_secret(text, start, end, inserted) is not None


# -- rule 6: a model rewrite's promise -------------------------------------------------------

def _promise_problem(old: Source, new: Source, span: _Span, preserve: str | None) -> str | None:
    if preserve is None:
        return None
    before = _tokens(old, span.old_bytes, preserve)
    after = _tokens(new, span.new_bytes, preserve)
    if before == after:
        return None
    what = "docstrings and comments" if preserve == "docstring" else "type annotations"
    return f"the rewrite changes more than {what}"


def _tokens(src: Source, window: tuple[int, int], preserve: str) -> list[str]:
    """The leaf tokens inside `window`, without comments and without what may change."""
    out: list[str] = []
    stack = [src.root]
    while stack:
        node = stack.pop()
        if node.end_byte <= window[0] or node.start_byte >= window[1] or node.type == "comment":
            continue
        if preserve == "docstring" and _is_docstring(node):
            continue
        if preserve == "annotations" and _is_annotation(node):
            continue
        if node.child_count == 0:
            out.append(src.node_text(node))
            continue
        stack.extend(reversed(node.children))
    return out


def _is_docstring(node: Node) -> bool:
    if node.type != "expression_statement" or node.named_child_count != 1 or node.named_children[0].type != "string":
        return False
    parent = node.parent
    if parent is None or parent.type not in _DOCSTRING_PARENTS:
        return False
    first = next((c for c in parent.named_children if c.type != "comment"), None)
    return first is not None and first.id == node.id


def _is_annotation(node: Node) -> bool:
    parent = node.parent
    if node.type == "type_annotation":
        return True  # TypeScript, with its colon
    if parent is None:
        return False
    if node.type == "type" and parent.type in ("typed_parameter", "typed_default_parameter", "function_definition",
                                               "assignment"):
        return True
    if not node.is_named and node.type in (":", "->") and parent.type in ("typed_parameter",
                                                                          "typed_default_parameter", "assignment"):
        return True
    return not node.is_named and node.type == "->" and parent.type == "function_definition"
