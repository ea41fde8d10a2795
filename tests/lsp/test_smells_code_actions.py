"""The parts of the smell quick fix that do not need a trained model: what is quoted to the
model, how its answer is read, and that only a rewrite that parses becomes an edit."""

from __future__ import annotations

from lsprotocol import types

from loopls.lsp.code_actions import build_prompt, extract_code, quick_fixes, target_span, verified_edit

SOURCE = ("import os\n\n\nclass Box:\n    def wide(self, a, b, c, d, e, f):\n        return a\n\n\n"
          "def other():\n    return 2\n")


def test_target_span_is_the_function_named_by_the_finding():
    start, end = target_span(SOURCE, "box.py", "Box.wide", 4, 5)
    # whole lines: a method keeps its indentation in the quote and in the rewrite
    assert SOURCE[start:end] == "    def wide(self, a, b, c, d, e, f):\n        return a"
    start, end = target_span(SOURCE, "box.py", "", 8, 9)  # no symbol: the lines it covers
    assert SOURCE[start:end] == "def other():\n"


def test_prompt_states_the_finding_and_quotes_the_code():
    prompt = build_prompt("python", "`Box.wide` has parameters 7 (threshold 5)", "def wide(...): ...", "LS104")
    assert "parameters 7 (threshold 5)" in prompt and "LS104" in prompt and "def wide(...)" in prompt
    assert prompt.endswith("```python\n")


def test_model_answer_is_read_from_its_fenced_block():
    assert extract_code("def f():\n    return 1\n```\ntrailing chatter") == "def f():\n    return 1"
    assert extract_code("```python\nx = 1\n```\n") == "x = 1"
    assert extract_code("   \n") == ""


def test_only_a_rewrite_that_parses_becomes_an_edit():
    start, end = target_span(SOURCE, "box.py", "Box.wide", 4, 5)
    good = "    def wide(self, options):\n        return options.a"
    edit = verified_edit("file:///box.py", 3, "box.py", SOURCE, (start, end), good)
    (doc_edit,) = edit.document_changes
    assert doc_edit.text_document.version == 3
    (text_edit,) = doc_edit.edits
    assert text_edit.range.start == types.Position(line=4, character=0)
    assert text_edit.range.end == types.Position(line=5, character=16)
    assert text_edit.new_text == good
    assert verified_edit("file:///box.py", 3, "box.py", SOURCE, (start, end), "def wide(self, (:\n") is None
    assert verified_edit("file:///box.py", 3, "box.py", SOURCE, (start, end), "  ") is None


def test_quick_fixes_only_for_loopls_diagnostics():
    rng = types.Range(start=types.Position(line=4, character=8), end=types.Position(line=4, character=12))
    ours = types.Diagnostic(range=rng, message="m", source="loopls", code="LS104",
                            data={"code": "LS104", "symbol": "Box.wide", "path": "box.py"})
    theirs = types.Diagnostic(range=rng, message="m", source="pyright")
    (action,) = quick_fixes("file:///box.py", 7, [ours, theirs])
    assert action.kind == types.CodeActionKind.QuickFix and action.edit is None
    assert action.data["version"] == 7 and action.data["symbol"] == "Box.wide"
    assert "too-many-arguments" in action.title
