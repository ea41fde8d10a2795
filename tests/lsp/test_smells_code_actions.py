"""The smell quick fix: what is quoted to the model (redacted), how its answer is read, that
only a rewrite that parses becomes an edit, and that one holding a secret never does."""

from __future__ import annotations

from lsp_session import open_document, session, wait_for_state
from lsprotocol import types
from scripted_model import create_scripted

from loopls.lsp.code_actions import (build_prompt, extract_code, quick_fix_prompt, quick_fixes, target_span,
                                     verified_edit)

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


def test_the_quoted_code_is_redacted():
    source = SOURCE.replace("return a", "token = 'ghp_Kq7ZxW2mPv9RtY4bN8cJ3LsD6fFa1TzQw5EA'\n        return a")
    data = {"symbol": "Box.wide", "start": [4, 0], "end": [6, 0], "message": "m", "code": "LS104"}
    prompt, (start, end) = quick_fix_prompt(source, "box.py", data)
    assert "ghp_" not in prompt and "<redacted>" in prompt
    assert "def wide(self, a, b, c, d, e, f)" in prompt and source[start:end].startswith("    def wide")


async def test_a_rewrite_holding_a_secret_is_not_offered(tmp_path):
    """Resolved over LSP with a model scripted to answer with a token: the action comes back
    disabled, with the reason, and without an edit."""
    source = tmp_path / "box.py"
    source.write_text(SOURCE, encoding="utf-8")
    model = create_scripted(tmp_path / "model", "# ghp_Kq7ZxW2mPv9RtY4bN8cJ3LsD6fFa1TzQw5EA", after="```python\n")
    async with session(tmp_path, {"model": {"name": str(model)}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), SOURCE)
        report = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=source.as_uri())))
        smell = next(d for d in report.items if d.data and d.data.get("symbol") == "Box.wide")
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=source.as_uri()), range=smell.range,
            context=types.CodeActionContext(diagnostics=[smell])))
        resolved = await client.code_action_resolve_async(actions[0])
        assert resolved.edit is None
        assert resolved.disabled and "secret-looking" in resolved.disabled.reason
