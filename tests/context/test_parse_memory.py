"""Parsing through the read callback (sources over YIELDING_PARSE_BYTES) frees what it read:
py-tree-sitter 0.26.1 leaks references to the slices a read callback returns, which made
every parse of a long buffer keep the bytes it read (the server's RSS grew with each edit)."""

from __future__ import annotations

import gc
import tracemalloc

from loopls.context.languages import YIELDING_PARSE_BYTES, Languages, parse


def test_cold_and_incremental_parses_of_a_long_source_keep_nothing_they_read():
    parser = Languages().parser("python")
    source = ("y = 1\n" * 8_000).encode()  # 48 KB
    assert len(source) > YIELDING_PARSE_BYTES
    tree = parse(parser, source)
    edited: list[int] = []

    def edits(count: int) -> None:
        nonlocal tree, source
        for i in range(count):
            tree = parse(parser, source)  # cold: reads the whole source
            row = len(edited) + 170
            at = 6 * row + len(edited)  # the start of a line (each line edited before it is one longer)
            source = source[:at] + b"x" + source[at:]
            edited.append(row)
            tree.edit(at, at, at + 1, (row, 0), (row, 0), (row, 1))
            tree = parse(parser, source, tree)  # incremental: re-reads around the edit

    tracemalloc.start()
    try:
        edits(2)  # warm: parser state, the tree's own size
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        edits(12)  # leaking, this kept ~1.9 MB (what each parse read)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, grown
    # Node.text still reads through the callback
    assert [tree.root_node.children[row].text for row in (3, edited[-1])] == [b"y = 1", b"xy = 1"]
