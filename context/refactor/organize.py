"""What the organize-imports action of every language shares: its kind and title, and how a
file's rewritten import blocks become one refactoring."""

from __future__ import annotations

from collections.abc import Iterable

from .edits import Edit, Refactoring
from .source import Source, swallow_blank_lines

KIND = "source.organizeImports"
TITLE = "Organize imports"


def organized(src: Source, blocks: Iterable[tuple[int, int, str]]) -> list[Refactoring]:
    """One refactoring replacing each block `[start, end)` of import statements by its rewrite;
    a block rewritten to nothing takes its emptied lines with it. None when nothing changes."""
    edits = []
    for start, end, new in blocks:
        if not new:
            end = swallow_blank_lines(src, end)
        if src.text[start:end] != new:
            edits.append(Edit(start, end, new))
    if not edits:
        return []
    return [Refactoring(KIND, TITLE, tuple(edits), (edits[0].start, edits[-1].end))]
