"""The context engine: index + signals + packing, for one cursor at a time.

`ContextEngine.assemble` is what runs on a keystroke: sync the derived structures with the
project model (only changed files), gather scored candidates, pack them with the FIM window.
"""

from __future__ import annotations

import time

from .cochange import CoChange
from .history import uncommitted_changes
from .packing import PackedContext, Packer
from .privacy import redact
from .languages import language_for_path
from .project import Project
from .prompt import TokenCounter, lines_keepends
from .signals import Candidate, Cursor, Signals
from .symbols import FileSymbols, references_of

MAX_HISTORY_COMMITS = 5000
CURSOR_WINDOW_LINES = 2000  # of a buffer the index does not hold, each side of the cursor


def cursor_window(text: str, offset: int, lines: int) -> tuple[str, int]:
    """Up to `lines` whole lines of `text` before the cursor's line and after it, and the
    cursor's line number in that window."""
    start = offset
    for _ in range(lines + 1):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    start += 1
    end = text.find("\n", offset)
    for _ in range(lines):
        if end < 0:
            break
        end = text.find("\n", end + 1)
    end = len(text) if end < 0 else end
    return text[start:end], text.count("\n", start, offset)


def buffer_prompt(packer: Packer, path: str | None, text: str, offset: int, budget: int,
                  layout: str | None = None) -> PackedContext:
    """The prompt without a project index (no workspace, a file outside it, an untitled
    buffer): the buffer's own FIM window, redacted, labelled with `path` when there is one.
    Only the window the budget needs is read, however large the buffer."""
    return packer.pack([], path, text, offset, budget, lambda _path: None, layout)


class ContextEngine:
    def __init__(self, index: Project, counter: TokenCounter, special: object,
                 history: bool = True, max_commits: int = MAX_HISTORY_COMMITS) -> None:
        self.index = index
        commits = index.history(max_commits) if history else []
        self.cochange = CoChange(commits) if commits else None
        self.signals = Signals(index, self.cochange)
        self.packer = Packer(counter, special, repo_name=index.root.name)
        self._lines: dict[str, tuple[int, list[str] | None]] = {}
        self.recent: list[str] = []  # files edited in this session, most recent first
        self.refresh_changes()
        self.last_timings: dict[str, float] = {}

    def refresh_changes(self) -> None:
        """Re-read the uncommitted diff (after saves and file events)."""
        prefix = self.index.git_prefix
        changes = {}
        for path, ranges in uncommitted_changes(self.index.root).items():
            if not prefix or path.startswith(prefix):
                changes[path[len(prefix):]] = ranges
        self.signals.changes = changes

    def touch(self, path: str) -> None:
        """`path` was just edited: it joins the personalization of the graph ranking."""
        self.recent = [path] + [p for p in self.recent if p != path][:9]

    def read_lines(self, path: str) -> list[str] | None:
        """Redacted lines of an indexed file, cached until the file changes."""
        version = self.index.versions.get(path, -1)
        cached = self._lines.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        text = self.index.text(path)
        lines = lines_keepends(redact(text, path)) if text is not None else None
        self._lines[path] = (version, lines)
        return lines

    def candidates(self, path: str, text: str, offset: int) -> list[Candidate]:
        symbols = self.index.files.get(path)
        line = text.count("\n", 0, offset)
        if symbols is None or (path not in self.index.documents and self.index.text(path) != text):
            # not indexed (too large, say) or not what the index holds: the lines around the
            # cursor, so that a keystroke in a huge buffer costs what one in a small one does.
            # The signals read only the cursor file's language and names used, not its tree
            # (parsing and indexing this window took 90 of the 110-150 ms of an assembly).
            text, line = cursor_window(text, offset, CURSOR_WINDOW_LINES)
            symbols = FileSymbols(language_for_path(path), text.count("\n") + 1, references=references_of(text))
        cursor = Cursor(path, text, line, symbols)
        recent = [*self.recent, *sorted(self.signals.changes)]
        return self.signals.gather(cursor, recent)

    def assemble(self, path: str, text: str, offset: int, budget: int, layout: str | None = None) -> PackedContext:
        """The packed prompt for the cursor at `offset` (a code-point index) of file `path`
        (workspace-relative) whose current text is `text`, in FIM `layout` (None: the
        checkpoint's own)."""
        t0 = time.perf_counter()
        cands = self.candidates(path, text, offset)
        t1 = time.perf_counter()
        packed = self.packer.pack(cands, path, text, offset, budget, self.read_lines, layout)
        t2 = time.perf_counter()
        self.last_timings = {"signals_s": t1 - t0, "packing_s": t2 - t1}
        return packed
