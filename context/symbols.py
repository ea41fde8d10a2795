"""Per-file symbols: definitions (from tree-sitter tags queries), references, chunks.

References are every identifier in the file, found with one regular expression: the tags
queries only know call sites, and a name used as a type, a value or an argument is just as
much a reason to show its definition. Chunks are line ranges cut at definition boundaries;
they are the unit of BM25 retrieval and of packing.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from dataclasses import dataclass, field

from tree_sitter import Node, Point, QueryCursor, Tree

from .imports.extract import extract_imports
from .languages import QUERY_SLICE_ROWS, Languages

IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_SUBWORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
CHUNK_MAX_LINES = 40
CHUNK_MIN_LINES = 6
# Nodes that only name part of a definition (C declarators, Python decorators): climb past them
# so that a definition's range covers the whole construct.
_WRAPPERS = {"function_declarator", "pointer_declarator", "reference_declarator", "function_definition",
             "decorated_definition", "template_declaration", "declaration", "field_declaration"}


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # function, class, method, constant, type, ...
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 0-based, inclusive
    end_line: int  # 0-based, inclusive
    terms: dict[str, int]  # BM25 terms and their counts


@dataclass
class FileSymbols:
    language: str | None
    line_count: int
    definitions: list[Definition] = field(default_factory=list)
    references: dict[str, int] = field(default_factory=dict)  # identifier -> occurrences
    chunks: list[Chunk] = field(default_factory=list)
    imports: list[dict] = field(default_factory=list)  # imports.ImportRef fields, as written

    def defined_names(self) -> set[str]:
        return {d.name for d in self.definitions}

    def to_json(self) -> dict:
        return {
            "language": self.language, "line_count": self.line_count,
            "definitions": [[d.name, d.kind, d.start_line, d.end_line] for d in self.definitions],
            "references": self.references,
            "chunks": [[c.start_line, c.end_line, c.terms] for c in self.chunks],
            "imports": self.imports,
        }

    @classmethod
    def from_json(cls, data: dict) -> FileSymbols:
        return cls(
            data["language"], data["line_count"],
            [Definition(*d) for d in data["definitions"]],
            data["references"],
            [Chunk(s, e, t) for s, e, t in data["chunks"]],
            data.get("imports", []),
        )


def terms_of(text: str) -> list[str]:
    """BM25 terms: each identifier lower-cased, plus its camelCase/snake_case parts."""
    out: list[str] = []
    for ident in IDENTIFIER.findall(text):
        out.extend(_identifier_terms(ident))
    return out


def term_counts(text: str) -> dict[str, int]:
    """Counts of `terms_of(text)`, splitting each distinct identifier once."""
    counts: dict[str, int] = {}
    get, split = counts.get, _identifier_terms
    for ident, n in Counter(IDENTIFIER.findall(text)).items():
        for term in split(ident):
            counts[term] = get(term, 0) + n
    return counts


@functools.lru_cache(maxsize=1 << 16)  # a pure function of the identifier: names repeat everywhere
def _identifier_terms(ident: str) -> tuple[str, ...]:
    parts = _SUBWORD.findall(ident)
    low = ident.lower()
    return (low, *(p.lower() for p in parts)) if len(parts) > 1 else (low,)


def references_of(text: str) -> dict[str, int]:
    counts = Counter(IDENTIFIER.findall(text))
    for short in [name for name in counts if len(name) < 2]:
        del counts[short]
    return dict(counts)


def definitions_of(tree: Tree, language: str, languages: Languages,
                   rows: tuple[int, int] | None = None) -> list[Definition]:
    """Definitions in the tree, or only those whose node touches `rows` (inclusive): the
    queries then skip the rest of the tree, which is what makes a keystroke cheap. Rows are
    queried in slices of `QUERY_SLICE_ROWS`, so that no single query call holds the GIL long."""
    nested, top = languages.definition_queries(language)
    first, last = rows if rows is not None else (0, tree.root_node.end_point.row)
    out = []
    for lo in range(first, last + 1, QUERY_SLICE_ROWS):
        hi = min(last, lo + QUERY_SLICE_ROWS - 1)
        for query, depth in ((nested, None), (top, 1)):
            if query is None:
                continue
            cursor = QueryCursor(query)
            cursor.set_point_range(Point(lo, 0), Point(hi + 1, 0))
            if depth is not None:
                cursor.set_max_start_depth(depth)  # the root's children only, as `(root (child))` said
            for _, captures in cursor.matches(tree.root_node):
                names = captures.get("name")
                kind = next((k for k in captures if k.startswith("definition.")), None)
                if not names or kind is None:
                    continue
                node = _whole(captures[kind][0])
                if node.start_point.row > last or node.end_point.row < first:
                    continue
                name = names[0].text.decode("utf-8", "replace")
                out.append(Definition(name, kind.split(".", 1)[1], node.start_point.row, node.end_point.row))
    return unique_definitions(out)


# When two patterns claim one node (Rust's method is also a function), the specific kind wins.
_KIND_RANK = {"method": 0, "class": 1, "interface": 1, "type": 2, "macro": 3, "function": 4}


def unique_definitions(found: list[Definition]) -> list[Definition]:
    """Sorted, one definition per (name, first line): the same order however they were found."""
    seen: set[tuple[str, int]] = set()
    out = []
    for d in sorted(found, key=lambda d: (d.start_line, d.end_line, d.name, _KIND_RANK.get(d.kind, 9), d.kind)):
        if (d.name, d.start_line) not in seen:
            seen.add((d.name, d.start_line))
            out.append(d)
    return out


def _whole(node: Node) -> Node:
    while node.parent is not None and node.parent.type in _WRAPPERS:
        node = node.parent
    return node


def chunk_lines(lines: list[str], definitions: list[Definition],
                known: dict[str, dict[str, int]] | None = None) -> list[Chunk]:
    """Line ranges cut where definitions start, merged up to CHUNK_MIN_LINES and split at
    CHUNK_MAX_LINES, covering every line once. `known` maps chunk texts to their terms from
    the previous version of the file: after an edit only the touched chunk is re-counted."""
    n = len(lines)
    cuts = sorted({0, *(d.start_line for d in definitions if 0 < d.start_line < n)})
    spans: list[tuple[int, int]] = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else n
        if spans and spans[-1][1] - spans[-1][0] < CHUNK_MIN_LINES:
            start = spans.pop()[0]
        for s in range(start, end, CHUNK_MAX_LINES):
            spans.append((s, min(end, s + CHUNK_MAX_LINES)))
    out = []
    for s, e in spans:
        if e > s:
            text = "".join(lines[s:e])
            terms = known.get(text) if known is not None else None
            out.append(Chunk(s, e - 1, terms if terms is not None else term_counts(text)))
    return out


def imports_of(tree: Tree, language: str, source: bytes) -> list[dict]:
    try:
        refs = extract_imports(language, tree, source)
    except (KeyError, ValueError):  # a language the import extractor does not cover
        return []
    fields = [f.name for f in dataclasses.fields(refs[0])] if refs else []
    return [{name: getattr(r, name) for name in fields} for r in refs]  # asdict's deep copies cost


def extract(text: str, language: str | None, tree: Tree | None, languages: Languages,
            source: bytes | None = None, known: dict[str, dict[str, int]] | None = None) -> FileSymbols:
    """Everything the index keeps about one file. `tree` is None for languages without a grammar;
    `known` is chunk text -> terms of the file's previous version (see chunk_lines)."""
    lines = text.splitlines(keepends=True)
    if tree is None or not language:
        return FileSymbols(language, len(lines), [], references_of(text), chunk_lines(lines, [], known))
    definitions = definitions_of(tree, language, languages)
    imports = imports_of(tree, language, source if source is not None else text.encode("utf-8"))
    return FileSymbols(language, len(lines), definitions, references_of(text),
                       chunk_lines(lines, definitions, known), imports)
