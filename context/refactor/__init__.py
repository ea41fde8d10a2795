"""Refactors: deterministic ones computed from the syntax tree (extract variable, extract
function/method, inline variable, organize imports, f-string <-> str.format) and the
model-driven ones (`rewrite`). Each returns plain edit records in code-point offsets; every
edit is verified (`verify`) before it is offered, and otherwise carries the reason why not.

`refactorings` is the entry point: all deterministic refactors available at a selection,
verified. The language server and `loopls refactor` both call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..languages import Languages, language_for_path
from .edits import Edit, Refactoring, apply_edits
from .extract_function import extract_function
from .extract_variable import extract_variable
from .inline import inline_variable
from .organize_js import organize_js
from .organize_python import first_party_modules, organize_python
from .rewrite import RewriteOffer, build_prompt, extract_code, finish_rewrite, rewrite_offers, smell_offer
from .source import Source
from .strings import convert_strings
from .verify import verify

Family = Callable[[Source, str, int, int, frozenset[str]], list[Refactoring]]
_FAMILIES: dict[str, tuple[str, Family]] = {
    "extract.variable": ("refactor.extract.variable", lambda s, p, a, b, f: extract_variable(s, a, b)),
    "extract.function": ("refactor.extract.function", lambda s, p, a, b, f: extract_function(s, a, b)),
    "inline.variable": ("refactor.inline.variable", lambda s, p, a, b, f: inline_variable(s, a, b)),
    "organizeImports": ("source.organizeImports", lambda s, p, a, b, f: (
        organize_python(s, p, f) if s.language == "python" else organize_js(s))),
    "strings": ("refactor.rewrite", lambda s, p, a, b, f: convert_strings(s, a, b)),
}
SUPPORTED = frozenset({"python", "javascript", "typescript", "tsx"})
MAX_LINES = 20_000  # larger files get no refactors: each request would parse and analyse it again
log = logging.getLogger(__name__)
ALL_KINDS = ("refactor.extract.variable", "refactor.extract.function", "refactor.inline.variable",
             "source.organizeImports", "refactor.rewrite.format", "refactor.rewrite.fstring",
             "refactor.rewrite.docstring", "refactor.rewrite.typeHints", "refactor.rewrite.simplify", "quickfix")


def kind_matches(kind: str, only: Iterable[str] | None) -> bool:
    """LSP's `only` filter: `refactor` asks for `refactor.extract.variable` too."""
    if only is None:
        return True
    return any(kind == o or kind.startswith(o + ".") for o in only)


def _family_wanted(family_kind: str, only: Iterable[str] | None) -> bool:
    if only is None:
        return True
    return any(kind_matches(family_kind, [o]) or o.startswith(family_kind + ".") for o in only)


def refactorings(text: str, path: str, start: int, end: int, languages: Languages,
                 only: Iterable[str] | None = None, first_party: frozenset[str] = frozenset(),
                 verified: bool = True) -> list[Refactoring]:
    """Every deterministic refactor at the selection `start..end` (code points; equal for a
    cursor), each verified: offered with its edits, or with the reason it is not.
    `verified=False` skips verification, for a listing whose edits are verified when resolved."""
    language = language_for_path(path)
    if language not in SUPPORTED or text.count("\n") > MAX_LINES:
        return []
    only = list(only) if only is not None else None
    src = Source(text, language, languages)
    found: list[Refactoring] = []
    for name, (family_kind, family) in _FAMILIES.items():
        if not _family_wanted(family_kind, only):
            continue
        try:
            found.extend(r for r in family(src, path, start, end, first_party) if kind_matches(r.kind, only))
        except RecursionError:  # a tree nested deeper than Python's stack: this family offers nothing
            log.warning("%s: %s skipped: the code is nested too deeply", path, name)
    return [verify(src, r, languages) for r in found] if verified else found


__all__ = ["ALL_KINDS", "Edit", "MAX_LINES", "Refactoring", "RewriteOffer", "SUPPORTED", "Source", "apply_edits", "build_prompt",
           "extract_code", "finish_rewrite", "first_party_modules", "kind_matches", "refactorings",
           "rewrite_offers", "smell_offer", "verify"]
