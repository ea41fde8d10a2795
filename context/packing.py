"""Packing: candidates and the cursor's file into one token sequence within a budget.

Counts are exact because the prompt is the concatenation of separately encoded pieces: what
is counted is what is sent. The layout is the repository-level FIM format of code models
(`<|repo_name|>` name, then `<|file_sep|>` path + content per file, the current file last in
fill-in-the-middle form: prefix-suffix-middle, or suffix-prefix-middle for a checkpoint that
declares it); without those tokens each file gets a path comment instead.
Files are ordered most stable first (file-level signals, then definitions, then retrieval,
then the user's uncommitted edits), then by path, so that the next keystroke, which mostly
picks the same snippets, shares the longest possible prompt prefix with this one. A line is
never shown twice: snippets are trimmed against what is already in the prompt, including
the current file's FIM window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .privacy import REDACTED, redact_pieces
from .prompt import FimPrompt, TokenCounter, build_fim_prompt, fim_token_ids

TIER = {"import": 0, "graph": 0, "cochange": 0, "history": 0, "definition": 1, "bm25": 2, "diff": 3}
ELISION = "⋮\n"  # between non-adjacent pieces of one file
MIN_PARTIAL_TOKENS = 48  # below this, a snippet cut to fit is not worth showing
MAX_FIM_TOKENS = 16384
CHARS_PER_TOKEN_GUESS = 8  # a first slice; _fim widens it when a token budget outlasts it
# Stability from one keystroke to the next, so the engine's prefix cache keeps hitting: the
# FIM window starts at a line number that is a multiple of this, and the room left for
# snippets is rounded down to a multiple of ROOM_STEP tokens (it would otherwise shrink by a
# token per keystroke and move the last snippet's cut).
ANCHOR_LINES = 8
ROOM_STEP = 64
ID_CACHE_CHARS = 2_000_000  # remembered texts' characters (with their ids, about 20 MB)
_HASH_COMMENT = {".py", ".pyi", ".rb", ".sh", ".bash", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".r", ".pl"}


@dataclass(frozen=True)
class Candidate:
    """A scored line range of another file, proposed for the prompt (by signals.py; kept here,
    beside its one consumer, so that the packer imports nothing that needs tree-sitter)."""

    path: str
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive
    source: str  # signals joined by "+", strongest first
    score: float


@dataclass(frozen=True)
class Snippet:
    path: str
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive
    source: str
    score: float
    tokens: int


@dataclass
class PackedContext:
    token_ids: list[int]
    snippets: list[Snippet]  # prompt order; the current file's FIM window is last ("current")
    budget: int
    fim: FimPrompt | None = None
    header_tokens: int = 0  # repo name, file labels and elision marks
    context_tokens: int = 0  # the leading ids that are other files (repo name and snippets), before the current file
    redactions: int = 0  # secrets replaced by a marker in what the prompt shows

    @property
    def prompt_tokens(self) -> int:
        return len(self.token_ids)


def fim_budget(budget: int) -> int:
    """The current file's share: all of a small budget's half, a quarter of larger ones."""
    return min(budget, max(min(budget // 2, 1024), min(budget // 4, MAX_FIM_TOKENS)))


def _comment(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    return "#" if suffix in _HASH_COMMENT else "//"


def subtract(start: int, end: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [start, end] not inside any covered range."""
    pieces = [(start, end)]
    for a, b in covered:
        nxt = []
        for s, e in pieces:
            if b < s or a > e:
                nxt.append((s, e))
                continue
            if s < a:
                nxt.append((s, a - 1))
            if e > b:
                nxt.append((b + 1, e))
        pieces = nxt
    return pieces


class _Remembering:
    """The packer's remembered encodings as a token counter, for the FIM window: its lines are
    encoded one by one, and from one keystroke to the next almost all of them are the same.
    Longer texts (a whole half of the window) are new at every keystroke: remembering them
    would only fill the memory."""

    def __init__(self, packer: Packer) -> None:
        self.packer = packer

    def encode(self, text: str) -> list[int]:
        if text.find("\n") in (-1, len(text) - 1):  # at most one line
            return self.packer.encode(text)
        return self.packer.counter.encode(text)


@dataclass
class _Piece:
    path: str
    start: int
    end: int
    source: str
    score: float
    ids: list[int]
    redactions: int = 0


@dataclass
class Packer:
    counter: TokenCounter
    special: object  # tokenizer special ids: fim_*, file_sep, repo_name (any may be None)
    repo_name: str | None = None
    _headers: dict[str, list[int]] = field(default_factory=dict)
    _ids: dict[str, list[int]] = field(default_factory=dict)
    _id_chars: int = 0  # characters of the texts in _ids

    def header(self, path: str) -> list[int]:
        if path not in self._headers:
            sep = getattr(self.special, "file_sep", None)
            if sep is not None:
                self._headers[path] = [sep, *self.counter.encode(path + "\n")]
            else:
                self._headers[path] = self.counter.encode(f"{_comment(path)} {path}\n")
        return self._headers[path]

    def repo_header(self) -> list[int]:
        token = getattr(self.special, "repo_name", None)
        if token is None or not self.repo_name:
            return []
        return [token, *self.counter.encode(self.repo_name + "\n")]

    def pack(self, candidates: list[Candidate], path: str | None, text: str, offset: int, budget: int,
             read_lines: Callable[[str], list[str] | None], layout: str | None = None) -> PackedContext:
        """The prompt for the cursor at `offset` of `text` (the file `path`, None for a buffer
        without one) within `budget`. `read_lines` gives another file's lines (keepends,
        redacted), or None when it cannot be shown. `layout` is the FIM layout (psm or spm);
        None takes the checkpoint's own (`special.fim_layout`, psm when it declares none)."""
        share = fim_budget(budget) if candidates else budget
        cut, before, fim = self._fim(text, offset, share, path)
        fim_ids = fim_token_ids(fim, self.special, layout or getattr(self.special, "fim_layout", "psm"))
        own_header = self.header(path) if path is not None else []
        fixed = len(self.repo_header()) + len(own_header) + len(fim_ids)
        if fixed > budget:  # the labels do not fit: the bare FIM prompt does (it was built to)
            own_header, fixed = [], len(fim_ids)
        first = text.count("\n", 0, cut) + before.count("\n", 0, len(before) - len(fim.prefix))
        last = first + (fim.prefix + fim.suffix).count("\n")
        room = budget - fixed
        if room >= 2 * ROOM_STEP:
            room -= room % ROOM_STEP
        pieces = self._select(candidates, {path: [(first, last)]}, room, read_lines)
        ids, snippets, headers = self._render(pieces, room)
        repo = self.repo_header() if own_header else []
        current = Snippet(path or "", first, last, "current", 0.0, len(fim_ids))
        token_ids = repo + ids + own_header + fim_ids
        redactions = (fim.prefix + fim.suffix).count(REDACTED) + sum(p.redactions for p in pieces)
        return PackedContext(token_ids, snippets + [current], budget, fim,
                             headers + len(repo) + len(own_header), len(repo) + len(ids), redactions)

    def _fim(self, text: str, offset: int, share: int, path: str | None) -> tuple[int, str, FimPrompt]:
        """The FIM window, built from a slice of the text around the cursor so that huge files
        cost no more than small ones. The slice grows until the window is cut by the budget
        rather than by the slice, so the result is the same as from the whole text. Both
        halves are redacted together: a secret the cursor splits is hidden on both sides."""
        reach = share * CHARS_PER_TOKEN_GUESS
        while True:
            cut, stop = max(0, offset - reach), min(len(text), offset + reach)
            before, after = redact_pieces(text, [(cut, offset), (offset, stop)], path)
            fim = build_fim_prompt(before + after, len(before), _Remembering(self), share,
                                   anchor_lines=ANCHOR_LINES, line_base=text.count("\n", 0, cut))
            short_before = cut > 0 and len(fim.prefix) == len(before)
            short_after = stop < len(text) and len(fim.suffix) == len(after)
            if not (short_before or short_after):
                return cut, before, fim
            reach *= 4

    @property
    def remembered_chars(self) -> int:
        """Characters of the texts whose encodings are remembered."""
        return self._id_chars

    def encode(self, text: str) -> list[int]:
        """Token ids of a snippet, remembered: the next keystroke packs mostly the same ones."""
        ids = self._ids.get(text)
        if ids is None:
            if self._id_chars + len(text) > ID_CACHE_CHARS:  # bounded by size, not by count
                self._ids.clear()
                self._id_chars = 0
            ids = self._ids[text] = self.counter.encode(text)
            self._id_chars += len(text)
        return ids

    def _select(self, candidates: list[Candidate], covered: dict[str, list[tuple[int, int]]], room: int,
                read_lines: Callable[[str], list[str] | None]) -> list[_Piece]:
        elision = len(self.counter.encode(ELISION))
        lines_of: dict[str, list[str] | None] = {}
        chosen: list[_Piece] = []
        shown: set[str] = set()
        for cand in candidates:
            if room < MIN_PARTIAL_TOKENS:
                break
            if cand.path not in lines_of:
                lines_of[cand.path] = read_lines(cand.path)
            lines = lines_of[cand.path]
            if not lines:
                continue
            last = min(cand.end_line, len(lines) - 1)
            rest = subtract(cand.start_line, last, covered.get(cand.path, []))
            if not rest:
                _credit(chosen, cand, last)
            for start, end in rest:
                overhead = elision + (0 if cand.path in shown else len(self.header(cand.path)))
                piece_ids, end = self._fit(lines, start, end, room - overhead)
                if not piece_ids:
                    continue
                hidden = sum(line.count(REDACTED) for line in lines[start:end + 1])
                chosen.append(_Piece(cand.path, start, end, cand.source, cand.score, piece_ids, hidden))
                shown.add(cand.path)
                covered.setdefault(cand.path, []).append((start, end))
                room -= len(piece_ids) + overhead
        return chosen

    def _fit(self, lines: list[str], start: int, end: int, room: int) -> tuple[list[int], int]:
        """Ids of lines start..end, or of the longest head of them within `room` tokens."""
        text = "".join(lines[start:end + 1])
        if not text.strip():
            return [], end  # blank lines left between pieces carry nothing
        if not text.endswith("\n"):
            text += "\n"
        ids = self.encode(text)
        if len(ids) <= room:
            return ids, end
        if room < MIN_PARTIAL_TOKENS:
            return [], end
        used, last = 0, start - 1
        for row in range(start, end + 1):
            used += len(self.counter.encode(lines[row]))
            if used > room:
                break
            last = row
        while last >= start:
            ids = self.counter.encode("".join(lines[start:last + 1]).rstrip("\n") + "\n")
            if len(ids) <= room:
                return ids, last
            last -= 1
        return [], end

    def _render(self, pieces: list[_Piece], room: int) -> tuple[list[int], list[Snippet], int]:
        by_file: dict[str, list[_Piece]] = {}
        for piece in pieces:
            by_file.setdefault(piece.path, []).append(piece)
        order = sorted(by_file, key=lambda p: (min(TIER.get(x.source.split("+")[0], 2) for x in by_file[p]), p))
        elision = self.counter.encode(ELISION)
        ids: list[int] = []
        snippets: list[Snippet] = []
        headers = 0
        for path in order:
            ids.extend(self.header(path))
            headers += len(self.header(path))
            previous_end = None
            for piece in sorted(by_file[path], key=lambda x: x.start):
                if previous_end is not None and piece.start != previous_end + 1:
                    ids.extend(elision)
                    headers += len(elision)
                ids.extend(piece.ids)
                previous_end = piece.end
                snippets.append(Snippet(path, piece.start, piece.end, piece.source, piece.score, len(piece.ids)))
        assert len(ids) <= room, "packing accounted fewer tokens than it rendered"
        return ids, snippets, headers


def _credit(chosen: list[_Piece], cand: Candidate, last: int) -> None:
    """A candidate already shown by earlier pieces: name its signals on them too, so that
    the explanation says every reason a line is in the prompt."""
    for piece in chosen:
        if piece.path == cand.path and piece.start <= last and cand.start_line <= piece.end:
            have = piece.source.split("+")
            piece.source = "+".join(have + [s for s in cand.source.split("+") if s not in have])
