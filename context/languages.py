"""Languages loopls parses, through the per-language tree-sitter grammar wheels.

The wheels ship compiled grammars and their own `queries/tags.scm`; nothing is downloaded.
Parsers and queries are cached per instance of `Languages`, not in module globals.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePath

from tree_sitter import Language, Parser, Query


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
        """The wheel's tags query plus loopls' own additions (`queries/<name>-tags.scm`), for
        grammars whose tags.scm misses definitions the context engine needs."""
        if name not in self._context_tags:
            spec = _BY_NAME[name]
            parts = [read_query_file(m, "tags.scm") for m in (spec.tags_from or (spec.module,))]
            parts.append(read_query_file("loopls.context", f"{name}-tags.scm"))
            source = "\n".join(parts)
            self._context_tags[name] = Query(self.language(name), source) if source.strip() else None
        return self._context_tags[name]
