"""Languages loopls parses, through the per-language tree-sitter grammar wheels.

The wheels ship compiled grammars and their own `queries/tags.scm`; nothing is downloaded.
Parsers and queries are cached per instance of `Languages`, not in module globals.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePath

from tree_sitter import Language, Node, Parser, Point, Query, QueryCursor, Tree


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    module: str  # the grammar wheel's import name
    function: str  # the module function returning the grammar pointer
    extensions: tuple[str, ...]
    # TypeScript's tags.scm is thin: it is meant to be read together with JavaScript's.
    tags_from: tuple[str, ...] = ()


SPECS = (
    LanguageSpec("python", "tree_sitter_python", "language", (".py", ".pyi")),
    LanguageSpec("javascript", "tree_sitter_javascript", "language", (".js", ".mjs", ".cjs", ".jsx")),
    LanguageSpec("typescript", "tree_sitter_typescript", "language_typescript", (".ts", ".mts", ".cts"),
                 ("tree_sitter_javascript", "tree_sitter_typescript")),
    LanguageSpec("tsx", "tree_sitter_typescript", "language_tsx", (".tsx",),
                 ("tree_sitter_javascript", "tree_sitter_typescript")),
    LanguageSpec("java", "tree_sitter_java", "language", (".java",)),
    LanguageSpec("go", "tree_sitter_go", "language", (".go",)),
    LanguageSpec("rust", "tree_sitter_rust", "language", (".rs",)),
    LanguageSpec("c", "tree_sitter_c", "language", (".c", ".h")),
    LanguageSpec("cpp", "tree_sitter_cpp", "language", (".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx")),
)
_BY_NAME = {s.name: s for s in SPECS}
_BY_EXT = {ext: s.name for s in SPECS for ext in s.extensions}


# Sources up to this size are parsed in one call (a few ms); longer ones are fed in slices.
YIELDING_PARSE_BYTES = 32 * 1024
# The tree keeps the read callback: `Node.text` calls it once per node and keeps what it
# needs, so a long slice is copied for every node asked (64 KB: 70-80 us a name, 1.4 s for
# the 20,000 definitions of one file; 256 bytes: under 1 us). Parsing is as fast either way.
_PARSE_SLICE = 256
# Rows per query call of `captures_in_slices` and `definitions_of`: a call holds the GIL for its
# whole length (2,000 rows of `y = 1`: 4.5 ms of CPU, 25-60 ms of wall time on a loaded machine);
# 250 rows: 0.5 ms, and the same total (the cursor skips the rows before the slice cheaply).
QUERY_SLICE_ROWS = 250


def _keep_parsing(*_: object) -> bool:
    return False


def parse(parser: Parser, source: bytes, old_tree: Tree | None = None) -> Tree:
    """`parser.parse(source, old_tree)` that lets other threads run while it works.

    A parse of a bytestring holds the GIL from start to end: 90 ms for 20,000 short lines,
    close to a second when an edit leaves a bracket open and error recovery runs to the end of
    the file, and the server's event loop cannot answer meanwhile. Fed through a read callback
    and given a progress callback, the parser calls back into Python every few hundred
    operations, and there the interpreter hands the GIL to a waiting thread (measured: at
    most ~12 ms without the GIL for the event loop, instead of the whole parse).
    """
    if len(source) <= YIELDING_PARSE_BYTES:
        return parser.parse(source, old_tree) if old_tree is not None else parser.parse(source)
    read = _Reader(source)
    try:
        tree = parser.parse(read, old_tree, progress_callback=_keep_parsing) if old_tree is not None \
            else parser.parse(read, progress_callback=_keep_parsing)
    finally:
        read.release_leaked()
    if tree is None:  # only a cancelled parse returns None, and nothing cancels this one
        raise RuntimeError("tree-sitter returned no tree")
    return tree


class _Reader:
    """The read callback of one parse (the tree keeps it: `Node.text` reads through it).

    py-tree-sitter 0.26.1 leaks two or three references to every bytes object a read callback
    returns during a parse (measured: `sys.getrefcount` of each slice after the parse and the
    tree are gone), so each slice read was never freed: the whole source once per cold parse,
    the re-read stretch on every keystroke's reparse, which was the server's memory growth of
    ~5 MB per 1,000 requests in bench/soak.py. After the parse, the references to each slice
    beyond this reader's own are the leaked ones and are given back, when a probe parse shows
    that the binding keeps such references after its tree is gone (`_read_results_leak`).
    """

    def __init__(self, source: bytes) -> None:
        self.source = source
        self._returned: list[bytes] | None = []  # the slices handed out during the parse

    def __call__(self, offset: int, _point: Point) -> bytes:
        chunk = self.source[offset:offset + _PARSE_SLICE]
        if self._returned is not None and len(chunk) > 1 and chunk is not self.source:
            self._returned.append(chunk)  # (empty and one-byte bytes are shared singletons)
        return chunk

    def release_leaked(self) -> None:
        returned, self._returned = self._returned, None
        if not returned or not _read_results_leak():
            return
        for i in range(len(returned)):
            extra = sys.getrefcount(returned[i]) - 2  # the list's reference and the call's argument
            if extra > 0:
                leaked = ctypes.py_object(returned[i])
                for _ in range(extra):
                    ctypes.pythonapi.Py_DecRef(leaked)


@functools.cache
def _read_results_leak() -> bool:
    """Whether this py-tree-sitter keeps references to what a read callback returned once the
    parse and its tree are gone (0.26.1 does). Only then are they given back: a binding that
    held them for its tree's sake must keep them."""
    source = b"def f(a):\n    return a\n" * 4
    returned: list[bytes] = []

    def read(offset: int, _point: Point) -> bytes:
        chunk = source[offset:offset + 16]
        if len(chunk) > 1:
            returned.append(chunk)
        return chunk

    tree = Parser(Language(importlib.import_module("tree_sitter_python").language())).parse(read)
    del tree
    return any(sys.getrefcount(returned[i]) > 2 for i in range(len(returned)))


def captures_in_slices(query: Query, node: Node) -> dict[str, list[Node]]:
    """`QueryCursor(query).captures(node)` in slices of `QUERY_SLICE_ROWS` rows, each capture
    once, in document order: one call over a huge file holds the GIL for its whole length.
    Only for queries whose patterns are single nodes (a pattern rooted above the slice would
    match in every slice)."""
    first, last = node.start_point.row, node.end_point.row
    if last - first <= QUERY_SLICE_ROWS:
        return QueryCursor(query).captures(node)
    found: dict[str, dict[int, Node]] = {}
    for row in range(first, last + 1, QUERY_SLICE_ROWS):
        cursor = QueryCursor(query)
        cursor.set_point_range(Point(row, 0), Point(row + QUERY_SLICE_ROWS, 0))
        for name, nodes in cursor.captures(node).items():
            seen = found.setdefault(name, {})
            for n in nodes:
                seen.setdefault(n.id, n)
    return {name: sorted(nodes.values(), key=lambda n: n.start_byte) for name, nodes in found.items()}


def language_for_path(path: str | PurePath) -> str | None:
    """The language name for a file path, or None for languages without a grammar."""
    return _BY_EXT.get(PurePath(path).suffix.lower())


def read_query_file(module: str, name: str) -> str:
    path = resources.files(module) / "queries" / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


class Languages:
    """Grammars, parsers and tags queries, loaded lazily and cached."""

    def __init__(self) -> None:
        self._languages: dict[str, Language] = {}
        self._tags: dict[str, Query | None] = {}
        self._context_tags: dict[str, Query | None] = {}
        self._definition_queries: dict[str, tuple[Query | None, Query | None]] = {}

    def language(self, name: str) -> Language:
        if name not in self._languages:
            spec = _BY_NAME[name]
            module = importlib.import_module(spec.module)
            self._languages[name] = Language(getattr(module, spec.function)())
        return self._languages[name]

    def parser(self, name: str) -> Parser:
        """A new parser (parsers hold state; callers keep their own)."""
        return Parser(self.language(name))

    def tags_query(self, name: str) -> Query | None:
        """The grammar wheel's tags query (`@name` with `@definition.*`/`@reference.*`)."""
        if name not in self._tags:
            spec = _BY_NAME[name]
            source = "\n".join(read_query_file(m, "tags.scm") for m in (spec.tags_from or (spec.module,)))
            self._tags[name] = Query(self.language(name), source) if source.strip() else None
        return self._tags[name]

    def context_query(self, name: str) -> Query | None:
        """The definition patterns of the wheel's tags query plus loopls' own additions
        (`queries/<name>-tags.scm`), for grammars whose tags.scm misses definitions."""
        if name not in self._context_tags:
            spec = _BY_NAME[name]
            parts = [read_query_file(m, "tags.scm") for m in (spec.tags_from or (spec.module,))]
            parts.append(read_query_file("loopls.context", f"{name}-tags.scm"))
            # Only definitions: the reference patterns match nearly every node and cost most.
            source = "\n".join(p for part in parts for p in top_level_patterns(part) if "@definition." in p)
            self._context_tags[name] = Query(self.language(name), source) if source.strip() else None
        return self._context_tags[name]

    def definition_queries(self, name: str) -> tuple[Query | None, Query | None]:
        """`context_query` split for row-limited use: (the patterns rooted below the file's
        root node, the patterns rooted at it with that root stripped). A cursor limited to
        some rows still walks every child of the root for a pattern like `(module
        (expression_statement ...))` (20,000 matches for 20,000 module-level assignments);
        the stripped pattern run with `set_max_start_depth(1)` matches the same children and
        honours the row range."""
        if name not in self._definition_queries:
            root = Parser(self.language(name)).parse(b"").root_node.type  # the grammar's root node
            nested, top = [], []
            spec = _BY_NAME[name]
            parts = [read_query_file(m, "tags.scm") for m in (spec.tags_from or (spec.module,))]
            parts.append(read_query_file("loopls.context", f"{name}-tags.scm"))
            for pattern in (p for part in parts for p in top_level_patterns(part) if "@definition." in p):
                inner = _strip_root(pattern, root)
                (nested if inner is None else top).append(pattern if inner is None else inner)
            language = self.language(name)
            self._definition_queries[name] = tuple(  # type: ignore[assignment]
                Query(language, "\n".join(group)) if group else None for group in (nested, top))
        return self._definition_queries[name]


def _strip_root(pattern: str, root: str) -> str | None:
    """`(root (child ...))` -> `(child ...)`; None for a pattern of any other shape."""
    text = pattern.strip()
    head = f"({root}"
    if not text.startswith(head) or not text.endswith(")") or text[len(head):len(head) + 1] not in (" ", "\n"):
        return None
    inner = text[len(head):-1].strip()
    if not inner.startswith("(") or not inner.endswith(")"):
        return None
    depth = 0
    for i, ch in enumerate(inner):  # one child pattern: its parentheses close at the very end
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i != len(inner) - 1:
            return None
    return inner


def top_level_patterns(source: str) -> list[str]:
    """A query file split into its top-level patterns, each with the captures and quantifiers
    that follow its closing bracket (`(node) @definition.function`)."""
    patterns: list[str] = []
    depth, start, i, n = 0, None, 0, len(source)
    while i < n:
        ch = source[i]
        if ch == ";":  # comment to the end of the line
            i = source.find("\n", i)
            i = n if i < 0 else i
            continue
        if ch == '"':  # string literal, with escapes
            i += 1
            while i < n and source[i] != '"':
                i += 2 if source[i] == "\\" else 1
        elif ch in "([":
            if depth == 0:
                start = i
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0 and start is not None:
                end = i + 1
                while True:  # trailing quantifiers and @captures belong to the pattern
                    j = end
                    while j < n and source[j] in " \t":
                        j += 1
                    if j < n and source[j] in "*+?":
                        end = j + 1
                    elif j < n and source[j] == "@":
                        end = j + 1
                        while end < n and (source[end].isalnum() or source[end] in "._-"):
                            end += 1
                    else:
                        break
                patterns.append(source[start:end])
                start = None
                i = end
                continue
        i += 1
    return patterns
