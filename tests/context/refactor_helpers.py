"""Running one refactor family on a text: the selection is named by the text it covers."""

from __future__ import annotations

from loopls.context.languages import Languages
from loopls.context.refactor import Refactoring, Source, apply_edits, refactorings, verify

LANGUAGES = Languages()
EXTENSIONS = {"python": "mod.py", "javascript": "mod.js", "typescript": "mod.ts", "tsx": "mod.tsx"}


def span(text: str, needle: str, occurrence: int = 0, cursor: bool = False) -> tuple[int, int]:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(needle, start + 1)
    return (start, start) if cursor else (start, start + len(needle))


def run(family, language: str, text: str, needle: str, occurrence: int = 0, cursor: bool = False,
        **kwargs) -> list[Refactoring]:
    """The family's refactors at the selection, verified as the server verifies them."""
    src = Source(text, language, LANGUAGES)
    start, end = span(text, needle, occurrence, cursor)
    return [verify(src, r, LANGUAGES) for r in family(src, start, end, **kwargs)]


def one(family, language: str, text: str, needle: str, **kwargs) -> Refactoring:
    (result,) = run(family, language, text, needle, **kwargs)
    return result


def applied(refactoring: Refactoring, text: str) -> str:
    assert refactoring.reason is None, refactoring.reason
    return apply_edits(text, refactoring.edits)


def at(text: str, language: str, needle: str, kind: str, cursor: bool = False, **kwargs) -> Refactoring:
    """The one verified refactor of `kind` that the entry point offers at the selection."""
    start, end = span(text, needle, cursor=cursor)
    found = [r for r in refactorings(text, EXTENSIONS[language], start, end, LANGUAGES, **kwargs) if r.kind == kind]
    assert len(found) == 1, found
    return found[0]
