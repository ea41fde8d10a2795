"""Token-level clones across files, like PMD's CPD: equal runs of at least `min_tokens` tokens.

Files are lexed into tokens (comments and whitespace dropped; identifiers and literals kept
as written, CPD's default). Every window of `min_tokens` tokens gets a polynomial hash,
computed for all windows at once with numpy (wrapping uint64 arithmetic); windows with equal
hashes are chained to their previous occurrence, and consecutive windows with the same offset
to their partner merge into one maximal clone. Reported clones are verified token by token.
A `CloneIndex` keeps the hashes sorted so that one edited file is checked against the rest
without rehashing the project.

Finding the clone runs is vectorised and linear in the file's tokens; only the clones that
will be reported are built (a `limit` per file, in position order), the others are counted.
A file of 20,000 identical lines has about 20,000 runs (each window's partner is the first
window with its hash, so the runs break every line): building them all took 0.2 s per
keystroke, building the 200 reported ones takes a few ms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_BASE = np.uint64(1_000_003)
_INV_BASE = np.uint64(pow(1_000_003, -1, 2**64))
# Group 1 is a comment (dropped); anything else is a token. Strings are single tokens. Every
# string and comment alternative ends at its terminator, else at the line end (one-line strings)
# or the end of the file, and never fails: so a token depends only on the text up to its own end
# (plus one character), which is what lets `relex` redo only the tokens around an edit.
_C_LIKE = re.compile(
    rb"(//[^\n]*|/\*.*?(?:\*/|\Z))|\"(?:\\.|[^\"\\\n])*(?:\"|(?=\n)|\Z)|'(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z)"
    rb"|`(?:\\.|[^`\\])*(?:`|\Z)|[A-Za-z_$][\w$]*|\d[\w.]*|[^\s\w]", re.S)
_PYTHON = re.compile(
    rb"(#[^\n]*)|[rRbBuUfF]{0,2}(?:\"\"\"(?:\\.|.)*?(?:\"\"\"|\Z)|'''(?:\\.|.)*?(?:'''|\Z)"
    rb"|\"(?:\\.|[^\"\\\n])*(?:\"|(?=\n)|\Z)|'(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z))|[A-Za-z_]\w*|\d[\w.]*|[^\s\w]", re.S)


@dataclass(frozen=True)
class Clone:
    path: str
    lines: tuple[int, int]  # 0-based first and last row
    other_path: str
    other_lines: tuple[int, int]
    tokens: int


def _lex_from(source: bytes, lang: str, pos: int = 0):
    """(start, token) pairs from byte `pos` on, comments dropped."""
    pattern = _PYTHON if lang == "python" else _C_LIKE
    for m in pattern.finditer(source, pos):
        if m.group(1) is None:  # group 1 is a comment
            yield m.start(), m.group(0)


def rows_of(source: bytes, starts: np.ndarray) -> np.ndarray:
    newlines = np.flatnonzero(np.frombuffer(source, dtype=np.uint8) == 10)
    return np.searchsorted(newlines, starts, side="left")


def tokenize(source: bytes, lang: str) -> tuple[list[bytes], np.ndarray]:
    """Tokens of a file and the 0-based row of each."""
    pairs = list(_lex_from(source, lang))
    starts = np.fromiter((s for s, _ in pairs), dtype=np.int64, count=len(pairs))
    return [t for _, t in pairs], rows_of(source, starts)


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of two byte strings (also used by check.py's re-check)."""
    n, lo = min(len(a), len(b)), 0
    while lo < n:  # compare in blocks: bytes equality runs in C
        hi = min(n, lo + 4096)
        if a[lo:hi] != b[lo:hi]:
            while a[lo] == b[lo]:
                lo += 1
            return lo
        lo = hi
    return n


def relex(old: bytes, old_starts: np.ndarray, old_ids: np.ndarray, new: bytes, lang: str,
          vocab: dict[bytes, int]) -> tuple[np.ndarray, np.ndarray]:
    """Token starts and ids of `new`, lexing only around the edit that turned `old` into it.

    Lexing restarts two tokens before the first changed byte and stops as soon as a token
    starts, in the unchanged tail, where an old token started (shifted by the edit): from there
    on the text and therefore the tokens are the same, so the old tail is reused.
    """
    prefix = common_prefix(old, new)
    limit = min(len(old), len(new)) - prefix
    suffix = min(common_prefix(old[::-1], new[::-1]), limit)
    delta, new_end = len(new) - len(old), len(new) - suffix
    k = int(np.searchsorted(old_starts, prefix, side="left")) - 2
    if k <= 0:  # nothing safe to keep before the edit (a comment there holds no token start)
        k, pos = 0, 0
    else:
        pos = int(old_starts[k])
    head_starts: list[int] = []
    head_ids: list[int] = []
    for start, token in _lex_from(new, lang, pos):
        if start >= new_end:
            j = int(np.searchsorted(old_starts, start - delta))
            if j < len(old_starts) and old_starts[j] == start - delta:
                tail_starts = old_starts[j:] + delta
                return (np.concatenate([old_starts[:k], np.asarray(head_starts, dtype=np.int64), tail_starts]),
                        np.concatenate([old_ids[:k], np.asarray(head_ids, dtype=np.int64), old_ids[j:]]))
        head_starts.append(start)
        head_ids.append(vocab.setdefault(token, len(vocab) + 1))
    return (np.concatenate([old_starts[:k], np.asarray(head_starts, dtype=np.int64)]),
            np.concatenate([old_ids[:k], np.asarray(head_ids, dtype=np.int64)]))


def _window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Hash of every window of `n` ids: sum ids[i+k] * B^k, normalised by B^-i."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        powers = np.empty(len(ids), dtype=np.uint64)
        powers[0] = 1
        powers[1:] = _BASE
        powers = np.cumprod(powers, dtype=np.uint64)
        inverse = np.empty(count, dtype=np.uint64)
        inverse[0] = 1
        inverse[1:] = _INV_BASE
        inverse = np.cumprod(inverse, dtype=np.uint64)
        prefix = np.zeros(len(ids) + 1, dtype=np.uint64)
        np.cumsum(ids.astype(np.uint64) * powers, dtype=np.uint64, out=prefix[1:])
        return (prefix[n:] - prefix[:count]) * inverse


@dataclass
class _Lexed:
    path: str
    ids: np.ndarray
    rows: np.ndarray


class CloneIndex:
    """Window hashes of a set of files, for whole-project and one-file clone detection."""

    def __init__(self, min_tokens: int = 100) -> None:
        self.min_tokens = min_tokens
        self._vocab: dict[bytes, int] = {}
        self._files: dict[str, _Lexed] = {}
        self._sorted: np.ndarray | None = None  # window hashes, sorted
        self._where: np.ndarray | None = None  # (file number, token offset) of each sorted hash
        self._run_end: np.ndarray | None = None  # end of the run of equal (hash, file) at each entry
        self._order: list[str] = []
        self._number: dict[str, int] = {}
        self._buffers: dict[str, tuple[bytes, np.ndarray, np.ndarray]] = {}  # edited file -> text, starts, ids

    def _lex(self, path: str, source: bytes, lang: str) -> _Lexed:
        tokens, rows = tokenize(source, lang)
        vocab = self._vocab
        ids = np.fromiter((vocab.setdefault(t, len(vocab) + 1) for t in tokens), dtype=np.int64, count=len(tokens))
        return _Lexed(path, ids, rows)

    def add(self, path: str, source: bytes, lang: str) -> None:
        self._files[path] = self._lex(path, source, lang)
        self._sorted = None

    def build(self) -> None:
        """Sort all window hashes (call after the last `add`)."""
        self._order = list(self._files)
        self._number = {p: i for i, p in enumerate(self._order)}
        hashes, files, offsets = [], [], []
        for number, path in enumerate(self._order):
            h = _window_hashes(self._files[path].ids, self.min_tokens)
            hashes.append(h)
            files.append(np.full(len(h), number, dtype=np.int64))
            offsets.append(np.arange(len(h), dtype=np.int64))
        all_hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        order = np.argsort(all_hashes, kind="stable")
        self._sorted = all_hashes[order]
        self._where = np.stack([np.concatenate(files)[order], np.concatenate(offsets)[order]], axis=1) \
            if hashes else np.empty((0, 2), dtype=np.int64)
        # Within a group of equal hashes the entries are in file order (stable sort), so one
        # file's entries are one run: skipping a file's own stale entries is one jump.
        file_of = self._where[:, 0]
        boundary = np.flatnonzero((self._sorted[1:] != self._sorted[:-1]) | (file_of[1:] != file_of[:-1])) + 1
        ends = np.append(boundary, len(self._sorted))
        self._run_end = ends[np.searchsorted(ends, np.arange(len(self._sorted)), side="right")]

    def all_clones(self, limit: int | None = None,
                   keep: Callable[[Clone], bool] | None = None) -> tuple[list[Clone], dict[str, int]]:
        """Clone pairs in the indexed files (each later occurrence against an earlier one), at
        most `limit` per later file, and per file the number of clones involving it that were
        counted but not built (either side of the pair)."""
        if self._sorted is None:
            self.build()
        found: list[Clone] = []
        unbuilt: dict[str, int] = {}
        for path in self._order:
            lexed = self._files[path]
            clones, rest = self._built(path, lexed, self._runs(lexed, self._number[path]), limit, keep)
            found.extend(clones)
            if len(rest):
                unbuilt[path] = unbuilt.get(path, 0) + len(rest)
                for number, count in zip(*np.unique(rest, return_counts=True)):
                    other = self._order[int(number)]
                    unbuilt[other] = unbuilt.get(other, 0) + int(count)
        return found, unbuilt

    def _lex_buffer(self, path: str, source: bytes, lang: str) -> _Lexed:
        """A buffer's tokens, re-lexed around the edit when its previous text is known."""
        previous = self._buffers.get(path)
        if previous is None:
            pairs = list(_lex_from(source, lang))
            vocab = self._vocab
            ids = np.fromiter((vocab.setdefault(t, len(vocab) + 1) for _, t in pairs), dtype=np.int64,
                              count=len(pairs))
            starts = np.fromiter((s for s, _ in pairs), dtype=np.int64, count=len(pairs))
        else:
            starts, ids = relex(previous[0], previous[1], previous[2], source, lang, self._vocab)
        self._buffers[path] = (source, starts, ids)
        return _Lexed(path, ids, rows_of(source, starts))

    def clones_for(self, path: str, source: bytes, lang: str, limit: int | None = None,
                   keep: Callable[[Clone], bool] | None = None) -> tuple[list[Clone], int]:
        """Clones of one (possibly edited) file against the indexed files and itself: the first
        `limit` in position order that `keep` accepts, and how many more there are (counted
        from the hash runs, not verified token by token)."""
        if self._sorted is None:
            self.build()
        lexed = self._lex_buffer(path, source, lang)
        own = CloneIndex(self.min_tokens)
        own._vocab = self._vocab  # same token ids, so the two indexes agree
        own._files[path] = lexed
        own.build()
        others, rest = self._built(path, lexed, self._runs(lexed, -1), limit, keep)
        mine, own_rest = own._built(path, lexed, own._runs(lexed, 0), limit, keep)
        found = sorted(others + mine, key=lambda c: (c.lines, c.other_path, c.other_lines))
        more = len(rest) + len(own_rest)
        if limit is not None and len(found) > limit:
            found, more = found[:limit], more + len(found) - limit
        return found, more

    def _partners(self, lexed: _Lexed, me: int) -> tuple[np.ndarray, np.ndarray]:
        """For each window of `lexed`, an earlier or other window with the same hash, as (file, offset).

        `me >= 0`: `lexed` is indexed file number `me`; the partner is the earliest occurrence,
        if it is in an earlier file or an earlier, non-overlapping window of the same file
        (entries are in (file, offset) order, so the first entry decides). `me < 0`: an edited
        file checked against the other files; its own stale entries are skipped.
        """
        n = self.min_tokens
        h = _window_hashes(lexed.ids, n)
        lo = np.searchsorted(self._sorted, h, side="left")
        hi = np.searchsorted(self._sorted, h, side="right")
        pfile = np.full(len(h), -1, dtype=np.int64)
        poff = np.full(len(h), -1, dtype=np.int64)
        pending = np.flatnonzero(hi > lo)
        if me >= 0:
            f, off = self._where[lo[pending], 0], self._where[lo[pending], 1]
            ok = (f < me) | ((f == me) & (off + n <= pending))
            pfile[pending[ok]], poff[pending[ok]] = f[ok], off[ok]
            return pfile, poff
        skip = self._number.get(lexed.path, -1)
        first = lo[pending]
        own = self._where[first, 0] == skip
        first[own] = self._run_end[first[own]]  # past the edited file's own (stale) entries
        inside = first < hi[pending]
        pending, first = pending[inside], first[inside]
        pfile[pending], poff[pending] = self._where[first, 0], self._where[first, 1]
        return pfile, poff

    def _runs(self, lexed: _Lexed, me: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(first window, last window, partner file, partner offset) of every candidate clone
        run of `lexed`, in position order (`me` as in `_partners`); all vectorised."""
        pfile, poff = self._partners(lexed, me)
        matched = pfile >= 0
        if not matched.any():
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, empty
        # a run continues while the partner window moves along with this one
        cont = np.zeros(len(pfile), dtype=bool)
        cont[1:] = matched[1:] & matched[:-1] & (pfile[1:] == pfile[:-1]) & (poff[1:] == poff[:-1] + 1)
        starts = np.flatnonzero(matched & ~cont)
        ends = np.flatnonzero(matched & ~np.append(cont[1:], False))
        return starts, ends, pfile[starts], poff[starts]

    def _built(self, path: str, lexed: _Lexed, runs: tuple[np.ndarray, ...], limit: int | None,
               keep: Callable[[Clone], bool] | None) -> tuple[list[Clone], np.ndarray]:
        """The first `limit` runs that verify token by token (and that `keep` accepts) as
        clones; the partner file numbers of the runs left unbuilt."""
        n = self.min_tokens
        starts, ends, pfiles, poffs = runs
        found: list[Clone] = []
        at = 0
        while at < len(starts) and (limit is None or len(found) < limit):
            i, j, f, start = int(starts[at]), int(ends[at]), int(pfiles[at]), int(poffs[at])
            at += 1
            length = j - i + n
            other = self._files[self._order[f]]
            if not np.array_equal(lexed.ids[i:i + length], other.ids[start:start + length]):
                continue  # a hash collision
            clone = Clone(path, (int(lexed.rows[i]), int(lexed.rows[i + length - 1])),
                          other.path, (int(other.rows[start]), int(other.rows[start + length - 1])), length)
            if keep is None or keep(clone):
                found.append(clone)
        return found, pfiles[at:]
