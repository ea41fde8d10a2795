"""Packing: exact budgets, no duplicated text, stable order, signals across files."""

from __future__ import annotations

import pytest
from context_helpers import make_repo, tokenizer, write

from loopls.context.assemble import ContextEngine
from loopls.context.project import Project
from loopls.context.packing import subtract

LIB = "".join(f"def helper_{i}(value):\n    total = value * {i}\n    return total + {i}\n\n" for i in range(60))
FILES = {
    "pkg/__init__.py": "",
    "pkg/geometry.py": "class Polygon:\n    def __init__(self, points):\n        self.points = points\n\n"
                       "    def perimeter(self):\n        return sum(self.points)\n",
    "pkg/lib.py": LIB,
    "pkg/main.py": "from pkg.geometry import Polygon\nfrom pkg.lib import helper_3\n\n\n"
                   "def run(points):\n    shape = Polygon(points)\n    return helper_3(shape.perimeter())\n",
    "web/api.ts": "export function fetchUser(id: number): string {\n  return `user ${id}`;\n}\n",
    "web/app.ts": "import { fetchUser } from './api';\n\nconst name = fetchUser(3);\n",
}


@pytest.fixture(scope="module")
def tok(tiny_checkpoint):
    return tokenizer(tiny_checkpoint)


def engine_for(root, tok, history=True):
    index = Project(root)
    index.build()
    return ContextEngine(index, tok, tok.special, history=history)


def cursor(engine, path, marker):
    text = engine.index.text(path)
    return text, text.index(marker)


def test_cross_file_definitions_are_packed(tmp_path, tok):
    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    text, offset = cursor(engine, "pkg/main.py", "helper_3(shape")
    packed = engine.assemble("pkg/main.py", text, offset, 2048)
    by_path = {(s.path, s.start_line): s for s in packed.snippets}
    assert ("pkg/geometry.py", 0) in by_path and "definition" in by_path[("pkg/geometry.py", 0)].source
    assert ("pkg/lib.py", 12) in by_path  # def helper_3 starts on line 12 (0-based)
    decoded = tok.decode(packed.token_ids, skip_special=False)
    assert "class Polygon" in decoded and "def helper_3(value)" in decoded
    assert decoded.index("pkg/geometry.py") < decoded.index("<|fim_prefix|>")
    text, offset = cursor(engine, "web/app.ts", "fetchUser(3)")
    packed = engine.assemble("web/app.ts", text, offset, 1024)
    assert any(s.path == "web/api.ts" and "definition" in s.source for s in packed.snippets)


@pytest.mark.parametrize("budget", [64, 100, 257, 512, 1000, 2048, 4096, 8192, 32768, 131072])
def test_budget_is_never_exceeded(tmp_path, tok, budget):
    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    text = engine.index.text("pkg/main.py") + LIB  # long enough to need truncation
    for offset in (0, len(text) // 3, len(text) - 1, len(text)):
        packed = engine.assemble("pkg/main.py", text, offset, budget)
        assert packed.prompt_tokens <= budget
        assert sum(s.tokens for s in packed.snippets) + packed.header_tokens == packed.prompt_tokens
        if budget == 2048:  # the repository holds more than this: it is filled to the end
            assert packed.prompt_tokens > budget * 0.9


def test_no_line_is_shown_twice(tmp_path, tok):
    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    text, offset = cursor(engine, "pkg/main.py", "helper_3(shape")
    packed = engine.assemble("pkg/main.py", text, offset, 8192)
    seen = set()
    for s in packed.snippets:
        for line in range(s.start_line, s.end_line + 1):
            assert (s.path, line) not in seen, (s.path, line)
            seen.add((s.path, line))


def test_packing_is_deterministic_and_prefix_stable(tmp_path, tok):
    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    text, offset = cursor(engine, "pkg/main.py", "helper_3(shape")
    first = engine.assemble("pkg/main.py", text, offset, 4096)
    again = engine_for(tmp_path, tok).assemble("pkg/main.py", text, offset, 4096)
    assert first.token_ids == again.token_ids
    typed = text[:offset] + "h" + text[offset:]  # one more keystroke
    after = engine.assemble("pkg/main.py", typed, offset + 1, 4096)
    fim_start = first.token_ids.index(tok.special.fim_prefix)
    assert after.token_ids[:fim_start] == first.token_ids[:fim_start]


def test_without_file_sep_tokens_files_get_path_comments(tmp_path, tok):
    from loopls.context.packing import Packer

    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)

    class NoRepoTokens:
        fim_prefix, fim_suffix, fim_middle = tok.special.fim_prefix, tok.special.fim_suffix, tok.special.fim_middle
        file_sep = repo_name = None

    engine.packer = Packer(tok, NoRepoTokens())
    text, offset = cursor(engine, "pkg/main.py", "helper_3(shape")
    packed = engine.assemble("pkg/main.py", text, offset, 2048)
    decoded = tok.decode(packed.token_ids, skip_special=False)
    assert "# pkg/geometry.py\n" in decoded and "<|file_sep|>" not in decoded
    assert packed.prompt_tokens <= 2048


def test_subtract():
    assert subtract(0, 10, [(3, 4), (8, 20)]) == [(0, 2), (5, 7)]
    assert subtract(5, 6, [(0, 10)]) == []
    assert subtract(5, 6, []) == [(5, 6)]


def test_current_file_definitions_outside_the_window(tmp_path, tok):
    long_file = "def far_away_target():\n    return 42\n\n" + "x = 1\n" * 3000 + "y = far_away_target()\n"
    make_repo(tmp_path, [{"big.py": long_file}])
    engine = engine_for(tmp_path, tok)
    packed = engine.assemble("big.py", long_file, len(long_file) - 1, 2048)
    snippet = next(s for s in packed.snippets if s.source.startswith("definition"))
    assert (snippet.path, snippet.start_line) == ("big.py", 0)
    write(tmp_path, {"other.py": "z = 2\n"})


def test_graph_updates_match_a_rebuild(tmp_path, tok):
    from loopls.context.imports import ImportGraph
    from loopls.context.signals import Signals

    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    index = engine.index
    engine.signals.sync()
    edits = [
        ("pkg/geometry.py", "class Shape:\n    pass\n"),  # Polygon disappears, Shape appears
        ("pkg/lib.py", LIB + "def Polygon():\n    pass\n"),  # Polygon defined elsewhere now
        ("pkg/main.py", "from pkg.lib import helper_1\nhelper_1(Shape())\n"),
        ("web/api.ts", "export function other(): number { return 1; }\n"),
    ]
    for path, text in edits:
        index.update_document(path, text)
        engine.signals.sync()
        fresh = Signals(index)
        fresh.sync()
        assert engine.signals.graph.edges == fresh.graph.edges, path
        fresh_imports = ImportGraph(index.files)  # the project's import graph, rebuilt
        for other, symbols in index.files.items():
            fresh_imports.set_imports(other, symbols.imports)
        assert index.imports.importers == fresh_imports.importers


def test_suffix_prefix_middle_changes_only_the_prompt_tail_while_typing(tmp_path, tok):
    make_repo(tmp_path, [FILES])
    engine = engine_for(tmp_path, tok)
    text, offset = cursor(engine, "pkg/main.py", "helper_3(shape")
    psm = engine.assemble("pkg/main.py", text, offset, 4096)
    first = engine.assemble("pkg/main.py", text, offset, 4096, layout="spm")
    assert sorted(first.token_ids) == sorted(psm.token_ids)  # the same pieces, the window reordered
    assert first.token_ids[-1] == tok.special.fim_middle
    typed = text[:offset] + "h" + text[offset:]
    after = engine.assemble("pkg/main.py", typed, offset + 1, 4096, layout="spm")
    shared = next(i for i, (a, b) in enumerate(zip(first.token_ids, after.token_ids)) if a != b)
    # everything up to the typed line's last tokens is shared, the suffix included
    assert shared > first.token_ids.index(tok.special.fim_prefix)
    assert len(first.token_ids) - shared <= 4
