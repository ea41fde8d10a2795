"""Long open documents: their symbols are brought up to date by `Project.settle` (after a
pause in typing), all edits since the last update at once; short ones on every edit."""

from __future__ import annotations

import random

from context_helpers import make_repo
from tree_sitter import QueryCursor, Tree

from loopls.context.documents import CHANGED_RANGES_MAX_CHILDREN, ParsedDocument, merged_span
from loopls.context.languages import QUERY_SLICE_ROWS, Languages
from loopls.context.project import DEFERRED_SYMBOL_LINES, Project
from loopls.context.symbols import definitions_of


def test_merged_span_keeps_the_text_outside_it_unchanged():
    rng = random.Random(7)
    for _ in range(2000):
        base = "".join(rng.choice("ab\n") for _ in range(rng.randrange(0, 40)))
        text, span = base, None
        for _ in range(rng.randrange(1, 6)):
            start = rng.randrange(len(text) + 1)
            end = rng.randrange(start, len(text) + 1)
            new = "".join(rng.choice("xy\n") for _ in range(rng.randrange(0, 4)))
            text = text[:start] + new + text[end:]
            span = merged_span(span, start, end, len(new))
        first, old_end, now_end = span
        assert 0 <= first <= old_end <= len(base) and first <= now_end <= len(text)
        assert base[:first] == text[:first] and base[old_end:] == text[now_end:], (base, text, span)


def _long_module(lines: int) -> str:
    return "".join(f"value_{i} = {i}\n" for i in range(lines))


def test_long_document_symbols_wait_for_settle_and_then_equal_a_cold_parse(tmp_path):
    text = _long_module(DEFERRED_SYMBOL_LINES + 10)
    make_repo(tmp_path, [{"big.py": text, "small.py": "def small():\n    return 1\n"}])
    project = Project(tmp_path)
    project.build()
    project.update_document("big.py", text)
    project.settle()
    before = project.files["big.py"]
    version = project.versions["big.py"]

    project.edit_document("big.py", 0, 0, "def fresh_name():\n    pass\n")  # a new first definition
    offset = project.documents["big.py"].text.index("value_3000 =")
    project.edit_document("big.py", offset, offset + len("value_3000"), "renamed_3000")
    assert project.files["big.py"] is before  # not on the keystroke ...
    assert project.versions["big.py"] > version  # ... though readers of the text know it changed
    assert project.unsettled == {"big.py"}
    source, tree = project.tree("big.py")
    assert source.startswith(b"def fresh_name") and tree.root_node.children[0].type == "function_definition"

    project.settle()
    settled = project.files["big.py"]
    assert settled == project.parse("big.py", project.documents["big.py"].text.encode("utf-8"))
    assert project.definitions("fresh_name") and project.definitions("renamed_3000")
    assert not project.definitions("value_3000") and not project.unsettled

    project.update_document("small.py", "def other():\n    return 2\n")  # short: at once
    assert project.definitions("other") and not project.definitions("small")


def test_closing_a_long_document_forgets_its_pending_update(tmp_path):
    text = _long_module(DEFERRED_SYMBOL_LINES)
    make_repo(tmp_path, [{"big.py": text}])
    project = Project(tmp_path)
    project.build()
    project.update_document("big.py", text + "late = 1\n")
    assert project.unsettled == {"big.py"}
    project.close_document("big.py")
    assert not project.unsettled and not project.definitions("late")
    project.settle()
    assert project.definitions("value_1") and not project.definitions("late")


def test_a_flat_long_document_is_not_diffed_and_still_equals_a_cold_parse(tmp_path, monkeypatch):
    """A document with more top-level nodes than CHANGED_RANGES_MAX_CHILDREN: its symbols are
    extracted afresh (no `Tree.changed_ranges`, one C call over every top-level node), in query
    slices, and equal a cold parse's after scattered edits; a shorter one is still diffed."""
    text = "y = 1\n" * (CHANGED_RANGES_MAX_CHILDREN + 100)
    make_repo(tmp_path, [{"flat.py": text}])
    project = Project(tmp_path)
    diffed = []
    original = Tree.changed_ranges
    monkeypatch.setattr(Tree, "changed_ranges", lambda self, other: diffed.append(1) or original(self, other))
    doc = ParsedDocument("flat.py", text, project.languages)
    doc.symbols()
    rng = random.Random(3)
    for step in range(3):
        for _ in range(20):
            offset = rng.randrange(len(doc.text))
            doc.edit(offset, offset, rng.choice(["x", "def f():\n    pass\n", "\n", "z = 2\n"]))
        assert doc.symbols() == project.parse("flat.py", doc.text.encode("utf-8")), step
    assert not diffed and len(doc.symbols().definitions) > CHANGED_RANGES_MAX_CHILDREN

    short = ParsedDocument("short.py", "y = 1\n" * 100, project.languages)
    short.symbols()
    short.edit(0, 0, "z = 2\n")
    assert short.symbols() == project.parse("short.py", short.text.encode("utf-8")) and diffed


def test_queries_run_in_short_slices(monkeypatch):
    """No definitions query call covers more than QUERY_SLICE_ROWS rows (each holds the GIL
    for its whole length), and slicing finds what one call over the whole tree finds."""
    languages = Languages()
    source = "".join(f"def f{i}(a):\n    return a\n\n" for i in range(400)).encode()
    tree = languages.parser("python").parse(source)
    ranges = []
    original = QueryCursor.set_point_range
    monkeypatch.setattr(QueryCursor, "set_point_range", lambda self, start, end: ranges.append((start.row, end.row))
                        or original(self, start, end))
    sliced = definitions_of(tree, "python", languages)
    assert ranges and max(end - start for start, end in ranges) <= QUERY_SLICE_ROWS
    assert len(sliced) == 400 and sliced == definitions_of(tree, "python", languages, (0, 1200))
