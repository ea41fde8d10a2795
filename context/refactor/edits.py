"""The records every refactor returns: text edits in code-point offsets and the offer that
carries them (or the reason no edit is offered). No LSP types here: `lsp/` converts them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Edit:
    start: int  # code-point offsets into the original text
    end: int
    text: str


@dataclass(frozen=True)
class Refactoring:
    kind: str  # an LSP code action kind: refactor.extract.variable, source.organizeImports, ...
    title: str
    edits: tuple[Edit, ...] = ()
    # The region (code points of the original text) the refactor means to change: verification
    # checks that nothing outside it changed and that no definition outside it appeared or vanished.
    target: tuple[int, int] = (0, 0)
    reason: str | None = None  # why no edit is offered; None when the edits are verified
    # What a model-made rewrite must leave as it was: "docstring" (only a docstring may be
    # added or changed) or "annotations" (only type annotations); None for no such promise.
    preserve: str | None = None
    notes: tuple[str, ...] = field(default=())  # shown with the edit (e.g. the names chosen)

    @property
    def offered(self) -> bool:
        return self.reason is None and bool(self.edits)

    def refused(self, reason: str) -> Refactoring:
        return replace(self, edits=(), reason=reason)


def apply_edits(text: str, edits: tuple[Edit, ...] | list[Edit]) -> str:
    """`text` with non-overlapping edits applied (in any order)."""
    out, last = [], 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < last or edit.end < edit.start or edit.end > len(text):
            raise ValueError(f"edits overlap or fall outside the text at {edit.start}..{edit.end}")
        out.append(text[last:edit.start])
        out.append(edit.text)
        last = edit.end
    out.append(text[last:])
    return "".join(out)
