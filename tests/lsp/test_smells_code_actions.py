"""The smell quick fix: what is quoted to the model (redacted), how its answer is read, that
only a rewrite that passes verification becomes an edit, and that one holding a secret never
does (over LSP, with a model scripted to write one)."""

from __future__ import annotations

from lsp_session import open_document, session, wait_for_state
from lsprotocol import types
from refactor_session import EDITOR_CAPABILITIES
from scripted_model import create_scripted

from loopls.context.languages import Languages
from loopls.context.refactor import Source, build_prompt, extract_code, finish_rewrite, smell_offer

SOURCE = ("import os\n\n\nclass Box:\n    def wide(self, a, b, c, d, e, f):\n        return a\n\n\n"
          "def other():\n    return 2\n")
LANGUAGES = Languages()


def _offer(symbol: str, start_row: int, end_row: int):
    src = Source(SOURCE, "python", LANGUAGES)
    return src, smell_offer(src, "box.py", "LS104", "too-many-arguments", symbol,
                            "`Box.wide` has parameters 7 (threshold 5)", start_row, end_row)


def test_target_is_the_function_named_by_the_finding():
    _, offer = _offer("Box.wide", 4, 5)
    # whole lines: a method keeps its indentation in the quote and in the rewrite
    assert SOURCE[offer.target[0]:offer.target[1]] == "    def wide(self, a, b, c, d, e, f):\n        return a"
    _, offer = _offer("", 8, 9)  # no symbol: the lines it covers
    assert SOURCE[offer.target[0]:offer.target[1]] == "def other():\n    return 2"
    assert offer.kind == "quickfix" and offer.title == "Refactor with the model: too-many-arguments (LS104)"


def test_prompt_states_the_finding_and_quotes_the_code():
    src, offer = _offer("Box.wide", 4, 5)
    prompt = build_prompt(src, offer)
    assert "parameters 7 (threshold 5)" in prompt and "LS104" in prompt
    assert "    def wide(self, a, b, c, d, e, f):\n        return a\n```" in prompt
    assert prompt.endswith("```python\n")


def test_the_quoted_code_is_redacted():
    text = SOURCE.replace("return a\n", 'token = "ghp_' + "x" * 36 + '"\n        return a\n')
    src = Source(text, "python", LANGUAGES)
    offer = smell_offer(src, "box.py", "LS104", "too-many-arguments", "Box.wide", "too many", 4, 6)
    prompt = build_prompt(src, offer)
    assert "ghp_" not in prompt and 'token = "<redacted>"' in prompt


def test_model_answer_is_read_from_its_fenced_block():
    assert extract_code("def f():\n    return 1\n```\ntrailing chatter") == "def f():\n    return 1"
    assert extract_code("```python\nx = 1\n```\n") == "x = 1"
    assert extract_code("   \n") == ""


def test_only_a_verified_rewrite_becomes_an_edit():
    src, offer = _offer("Box.wide", 4, 5)
    good = "    def wide(self, options):\n        return options.a"
    result = finish_rewrite(src, offer, good + "\n```\n", LANGUAGES)
    assert result.reason is None and result.edits[0].text == good
    assert "would not parse" in finish_rewrite(src, offer, "def wide(self, (:\n", LANGUAGES).reason
    assert "holds no code" in finish_rewrite(src, offer, "  ", LANGUAGES).reason
    # the bug this guards against: a rewrite that also re-declares another function of the file
    redeclares = good + "\n\n\ndef other():\n    return 3"
    src2 = Source(SOURCE, "python", LANGUAGES)
    offer2 = smell_offer(src2, "box.py", "LS104", "too-many-arguments", "", "m", 4, 5)
    assert "re-declares `other`" in finish_rewrite(src2, offer2, redeclares.replace("    def", "def", 1), LANGUAGES).reason


async def test_a_rewrite_holding_a_secret_is_not_offered(tmp_path):
    """Resolved over LSP with a model scripted to answer with a token (in a comment that would
    otherwise parse and pass): the action comes back disabled, with the reason, and without
    an edit."""
    text = "def wide(a, b, c, d, e, f):\n    return a\n\n\ndef other():\n    return 2\n"
    source = tmp_path / "box.py"
    source.write_text(text, encoding="utf-8")
    model = create_scripted(tmp_path / "model", "# ghp_Kq7ZxW2mPv9RtY4bN8cJ3LsD6fFa1TzQw5EA", after="```python\n")
    async with session(tmp_path, {"model": {"name": str(model)}}, capabilities=EDITOR_CAPABILITIES) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), text)
        report = await client.text_document_diagnostic_async(types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=source.as_uri())))
        smell = next(d for d in report.items if d.data and d.data.get("symbol") == "wide")
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=source.as_uri()), range=smell.range,
            context=types.CodeActionContext(diagnostics=[smell], only=["quickfix"])))
        (fix,) = actions
        resolved = await client.code_action_resolve_async(fix)
        assert resolved.edit is None
        assert resolved.disabled and "secret-looking" in resolved.disabled.reason
        status = await client.protocol.send_request_async("loopls/status", None)
        assert status.stats.generated_tokens > 0  # the model wrote the answer that was refused
