"""The completion path end to end: the real server over stdio, pytest-lsp's real client, real
checkpoints (the embedded default, or scripted ones whose output is known)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lsprotocol import types
from lsp_session import inline_params, insert, open_document, plain, session, status, wait_for_state
from scripted_model import create_scripted

# A GitHub-token-shaped string whose characters are all distinct (the scripted model needs that).
GITHUB_TOKEN = "ghp_" + "Kq7ZxW2mPv9RtY4bN8cJ3LsD6fFa1TzQw5EA"
SCRIPTS = {
    "radius": ("radius)", False),
    "secret": (GITHUB_TOKEN, False),
    "repeat": ("    total += x\n", True),
    "control": ("ok\x08\x15done", False),
    "call": ("compute(x)", False),
}


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("scripted")
    return {name: str(create_scripted(base / name, script, cycle)) for name, (script, cycle) in SCRIPTS.items()}


def _apply(line: str, item_range: types.Range, new_text: str, encoding: str = "utf-16") -> str:
    """Apply an edit on one line as a client does, counting columns in `encoding` units."""
    def width(ch: str) -> int:
        if encoding == "utf-8":
            return len(ch.encode("utf-8"))
        return 2 if encoding == "utf-16" and ord(ch) > 0xFFFF else 1

    def index(units: int) -> int:
        count = 0
        for i, ch in enumerate(line):
            if count >= units:
                return i
            count += width(ch)
        return len(line)

    return line[:index(item_range.start.character)] + new_text + line[index(item_range.end.character):]


async def test_typing_then_pausing_shows_a_suggestion_and_superseded_keys_generate_nothing(tmp_path, scripted) -> None:
    source = tmp_path / "app.py"
    source.write_text("def f(x):\n    \n", encoding="utf-8")
    async with session(tmp_path, {"model": {"name": scripted["call"]}}) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, source.read_text())
        typed = "value = "
        pending: list[asyncio.Future] = []
        for i, ch in enumerate(typed):
            if pending and not pending[-1].done():  # as VS Code does: cancel the request it no longer needs
                client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"key-{i - 1}"))
            insert(client, uri, i + 2, 1, 4 + i, ch)
            pending.append(asyncio.ensure_future(client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 5 + i), msg_id=f"key-{i}")))
            await asyncio.sleep(0.08)
        last_key = time.perf_counter()
        result = await asyncio.wait_for(pending[-1], 60)
        waited = time.perf_counter() - last_key
        await asyncio.gather(*pending[:-1], return_exceptions=True)
        assert result is not None and result.items[0].insert_text == "compute(x)"
        after = await status(client)
        stats = after["stats"]
        assert stats["completed"] == 1 and stats["cancelled"] == 0, stats  # one generation, for the pause only
        # the prompt is built late in the debounce on the same line: keystrokes superseded before that build none
        assert 1 <= stats["prompts"] < len(typed), stats
        # nothing generated was left unshown: the native engine's warm-ups only prefill
        assert stats["wasted_tokens"] == stats["warmup_tokens"] == 0 and stats["warmups"] <= 1, stats
        assert waited < 1.0 + 10.0  # at most the longest debounce, plus one short generation on a busy CI machine
        assert after["lastLatencyMs"] > 0


def _units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return len(text.encode("utf-16-le")) // 2 if encoding == "utf-16" else len(text)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
async def test_accepting_on_a_non_ascii_line_keeps_the_line_in_every_encoding(tmp_path, scripted, encoding) -> None:
    source = tmp_path / "shapes.py"
    line = 's = "é中😀"; y = area()'
    source.write_text(line + "\n", encoding="utf-8")
    caps = types.ClientCapabilities(general=types.GeneralClientCapabilities(position_encodings=[encoding]))
    async with session(tmp_path, {"model": {"name": scripted["radius"]}}, caps) as client:
        assert client.init_result.capabilities.position_encoding == encoding
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, line + "\n")
        cursor = _units(line[:-1], encoding)  # between ( and )
        result = await client.text_document_inline_completion_async(inline_params(uri, 0, cursor, invoked=True))
        item = result.items[0]
        accepted = _apply(line, item.range, item.insert_text, encoding)
        assert accepted == 's = "é中😀"; y = area(radius)'  # the auto-closed ) is replaced, not doubled
        # the editor applies it and tells the server in its units; the server's buffer follows
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(range=item.range, text=item.insert_text)]))
        inside = _units('s = "é中😀"; y = area(rad', encoding)
        menu = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=inside)))
        word_start = _units('s = "é中😀"; y = area(', encoding)
        assert menu.items and menu.items[0].text_edit.range.start == types.Position(line=0, character=word_start)
        assert menu.items[0].filter_text.startswith("rad")


async def test_a_partial_configuration_change_keeps_the_other_options(tmp_path) -> None:
    init = {"model": {"name": "tiny"}, "completion": {"maxTokens": 16, "contextTokens": 1024}}
    async with session(tmp_path, init) as client:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"loopls": {"completion": {"temperature": 0.2}}}))
        options = (await status(client))["options"]
        assert options["completion"] == {**options["completion"], "maxTokens": 16, "contextTokens": 1024,
                                         "temperature": 0.2}
        assert options["model"]["name"] == "tiny"
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"loopls": {"completion": {"maxTokens": -1, "maxLines": 3}}}))
        options = (await status(client))["options"]
        assert options["completion"]["maxTokens"] == 48  # that key's default
        assert options["completion"]["maxLines"] == 3 and options["completion"]["temperature"] == 0.2
        warnings = [m for m in client.messages if m.type == types.MessageType.Warning and "maxTokens" in m.message]
        assert len(warnings) == 1


async def test_the_server_pulls_its_configuration_when_the_client_can_answer(tmp_path) -> None:
    caps = types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(configuration=True))
    async with session(tmp_path, None, caps, configuration={"completion": {"maxTokens": 7}}) as client:
        deadline = time.monotonic() + 30
        while (await status(client))["options"]["completion"]["maxTokens"] != 7:
            assert time.monotonic() < deadline, "the server did not pull workspace/configuration"
            await asyncio.sleep(0.1)
        client.set_configuration({"completion": {"maxTokens": 9}}, section="loopls")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        while (await status(client))["options"]["completion"]["maxTokens"] != 9:
            assert time.monotonic() < deadline, "a change notification without settings did not pull"
            await asyncio.sleep(0.1)


async def test_a_missing_model_is_reported_once_and_completions_wait_for_a_fix(tmp_path) -> None:
    source = tmp_path / "a.py"
    source.write_text("def f(x):\n    \n", encoding="utf-8")
    missing = tmp_path / "no-such-checkpoint"
    caps = types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True))
    async with session(tmp_path, {"model": {"name": str(missing)}}, caps) as client:
        error = await wait_for_state(client, "error")
        assert str(missing) in error["message"] and "model.name" in error["message"]
        open_document(client, source.as_uri(), source.read_text())
        for i in range(4):
            insert(client, source.as_uri(), i + 2, 1, 4 + i, "x")
            assert await client.text_document_inline_completion_async(inline_params(source.as_uri(), 1, 5 + i)) is None
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and str(missing) in errors[0].message
        titles = [r.title for reports in client.progress_reports.values() for r in reports
                  if isinstance(r, types.WorkDoneProgressBegin)]
        assert "loopls: loading model" in titles
        assert any(s["state"] == "loading" for s in client.statuses) and client.statuses[-1]["state"] == "error"
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"loopls": {"model": {"name": "tiny"}}}))
        await wait_for_state(client, "ready")
        assert client.statuses[-1]["state"] == "ready" and client.statuses[-1]["model"]["loaded"]
        # a line halfway written: the random model's text is not held against its syntax
        insert(client, source.as_uri(), 6, 1, 8, " = ")
        result = await client.text_document_inline_completion_async(inline_params(source.as_uri(), 1, 11, invoked=True))
        assert result is not None and result.items


async def test_a_model_writing_a_secret_gives_no_item(tmp_path, scripted) -> None:
    source = tmp_path / "deploy.py"
    source.write_text("TOKEN = \n", encoding="utf-8")
    async with session(tmp_path, {"model": {"name": scripted["secret"]}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), source.read_text())
        assert await client.text_document_inline_completion_async(inline_params(source.as_uri(), 0, 8, True)) is None
        menu = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=source.as_uri()), position=types.Position(line=0, character=8)))
        assert not menu.items
        stats = (await status(client))["stats"]
        assert stats["secrets_dropped"] >= 2 and stats["completed"] >= 2  # generated, then dropped


async def test_what_is_shown_is_cleaned_for_its_place(tmp_path, scripted) -> None:
    source = tmp_path / "calc.py"
    text = "def area(r):\n    return 3.14 * area()\n\ndef total(xs):\n    \n"
    source.write_text(text, encoding="utf-8")
    async with session(tmp_path, {"model": {"name": scripted["repeat"]}}) as client:
        uri = source.as_uri()
        await wait_for_state(client, "ready")
        open_document(client, uri, text)
        repeated = await client.text_document_inline_completion_async(inline_params(uri, 4, 4, True))
        assert [i.insert_text for i in repeated.items] == ["total += x"]  # eight identical lines become one
        for name, line, character, expected in (("control", 4, 4, "okdone"), ("radius", 1, 23, "radius)")):
            client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
                settings={"loopls": {"model": {"name": scripted[name]}}}))
            await asyncio.sleep(0.2)
            await wait_for_state(client, "ready")
            result = await client.text_document_inline_completion_async(inline_params(uri, line, character, True))
            assert result.items[0].insert_text == expected
        item = result.items[0]
        assert (item.range.start.character, item.range.end.character) == (23, 24)  # replaces the auto-closed )
        assert item.filter_text == item.insert_text
        assert _apply(text.split("\n")[1], item.range, item.insert_text) == "    return 3.14 * area(radius)"


async def test_acceptance_signals_are_counted_and_status_is_pushed(tmp_path, scripted) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def f(x):\n    y = \n", encoding="utf-8")
    async with session(tmp_path, {"model": {"name": scripted["call"]}}) as client:
        commands = client.init_result.capabilities.execute_command_provider.commands
        assert "loopls.acceptCompletion" in commands
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, source.read_text())
        result = await client.text_document_inline_completion_async(inline_params(uri, 1, 8, invoked=True))
        item = result.items[0]
        assert item.command.command == "loopls.acceptCompletion"
        item_id = item.command.arguments[0]["id"]
        client.protocol.notify("loopls/didShowCompletion", {"id": item_id})
        client.protocol.notify("loopls/didShowCompletion", {"id": item_id})  # counted once
        client.protocol.notify("loopls/didPartiallyAcceptCompletion", {"id": item_id, "acceptedLength": 7})
        client.protocol.notify("loopls/didShowCompletion", {"id": "not-an-item"})
        await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=item.command.command, arguments=item.command.arguments))
        current = await status(client)
        assert current["acceptance"] == {"shown": 1, "accepted": 1, "partiallyAccepted": 1}
        assert current["state"] == "ready" and current["lastLatencyMs"] > 0 and current["version"]
        states = [s["state"] for s in client.statuses]
        assert states[0] == "loading" and "ready" in states
        assert {"model", "index", "acceptance", "version"} <= set(client.statuses[-1])


async def test_an_explicit_request_gets_several_distinct_candidates(tmp_path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("import math\n\ndef area(radius):\n    \n", encoding="utf-8")
    # fp32 weights: their three samples at this cursor differ; with int8 (the CPU default) the
    # shipped model's three samples here are the same text, which the server merges into one.
    async with session(tmp_path, {"completion": {"maxTokens": 12, "candidates": 3},
                                  "model": {"cpuWeights": "fp32"}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), source.read_text())
        result = await client.text_document_inline_completion_async(inline_params(source.as_uri(), 3, 4, invoked=True))
        texts = [i.insert_text for i in result.items]
        assert len(texts) >= 2 and len(set(texts)) == len(texts)
        automatic = await client.text_document_inline_completion_async(inline_params(source.as_uri(), 3, 4))
        assert len(automatic.items) >= 1


async def test_untitled_and_outside_documents_get_buffer_only_completions(tmp_path, scripted) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "lib.py").write_text("def compute(x):\n    return x\n", encoding="utf-8")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("y = \n", encoding="utf-8")
    async with session(workspace, {"model": {"name": scripted["call"]}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, "untitled:Untitled-1", "y = \n")
        open_document(client, outside.as_uri(), "y = \n")
        for uri in ("untitled:Untitled-1", outside.as_uri()):
            result = await client.text_document_inline_completion_async(inline_params(uri, 0, 4, invoked=True))
            assert result is not None and result.items[0].insert_text == "compute(x)", uri
        context = plain(await client.protocol.send_request_async("loopls/contextStatus", None))
        assert context["completionPrompts"] == 0  # neither got (or needed) the project's context


async def test_a_missing_api_key_is_reported_once(tmp_path, monkeypatch) -> None:
    """model.apiKeyEnv naming an unset variable: one error, state "error", completions null."""
    monkeypatch.delenv("LOOPLS_TEST_UNSET_KEY", raising=False)
    source = tmp_path / "a.py"
    source.write_text("def f(x):\n    \n", encoding="utf-8")
    options = {"model": {"backend": "openai", "url": "http://127.0.0.1:9/v1", "apiKeyEnv": "LOOPLS_TEST_UNSET_KEY"}}
    async with session(tmp_path, options) as client:
        error = await wait_for_state(client, "error")
        assert "LOOPLS_TEST_UNSET_KEY" in error["message"] and "model.*" in error["message"]
        open_document(client, source.as_uri(), source.read_text())
        for i in range(3):
            assert await client.text_document_inline_completion_async(
                inline_params(source.as_uri(), 1, 4, invoked=True)) is None
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "LOOPLS_TEST_UNSET_KEY" in errors[0].message


async def _inline_once(folder: Path, settings: dict, text: str, line: int, character: int):
    """Open app.py holding `text` in a server started with `settings`, ask for an automatic
    inline completion at (line, character): (the result, the server's completion stats)."""
    source = folder / "app.py"
    source.write_text(text, encoding="utf-8")
    async with session(folder, settings) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, text)
        result = await asyncio.wait_for(client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, character)), 60)
        return result, (await status(client))["stats"]


async def test_at_the_end_of_a_complete_line_the_next_line_is_suggested(tmp_path_factory, tmp_path) -> None:
    # the model ends the cursor's line at once (its script starts with the line break)
    model = str(create_scripted(tmp_path_factory.mktemp("next") / "next", "\n    return y"))
    result, stats = await _inline_once(tmp_path, {"model": {"name": model}}, "def f(x):\n    y = x\n", 1, len("    y = x"))
    # the item's range starts at the word before the cursor, so that clients filter on it
    assert result is not None and result.items[0].insert_text == "x\n    return y"
    assert stats["completed"] == 2 and stats["wasted_tokens"] == 0, stats  # the line break, then the line


@pytest.mark.parametrize("max_tokens", [48, 4])
async def test_when_the_greedy_line_is_rejected_the_next_most_likely_first_token_is_shown(tmp_path_factory, tmp_path,
                                                                                          max_tokens) -> None:
    # ` += 1` after an annotation breaks the line (the line check drops it): the model's
    # second choice of a first token, ` =`, goes on to ` = Counter()`, which keeps it parsing;
    # unless the token limit cuts it before its line ends (4 tokens: ` = Cou`): then the
    # check cannot judge it, and it is not shown
    model = str(create_scripted(tmp_path_factory.mktemp("second") / "second", " += 1", alternative=" = Counter()"))
    result, stats = await _inline_once(tmp_path, {"model": {"name": model}, "completion": {"maxTokens": max_tokens}},
                                       "def f(x):\n    shared: Counter[str]\n    return shared\n",
                                       1, len("    shared: Counter[str]"))
    assert stats["waste"]["dropped_last"] == [["line check", "    shared: Counter[str]", " += 1"]], stats
    if max_tokens == 4:
        assert result is None and stats["next_best"] == 0 and stats["last_null"] == "empty", stats
        return
    assert result is not None and result.items[0].insert_text == " = Counter()", result
    assert stats["next_best"] == 1 and stats["last_replaced"] == " += 1", stats
    # what was not shown: the greedy line's tokens and the probe's, less the one standing for ` =`
    assert stats["waste"]["rejected"]["tokens"] == stats["generated_tokens"] - stats["shown_tokens"], stats


async def test_at_a_line_end_another_line_break_may_replace_the_greedy_one(tmp_path_factory, tmp_path) -> None:
    # the greedy next line leaves the block (`return x` at the function's indentation, with
    # the block's own `return y` after the cursor): the filters drop it; the model's second
    # choice of a line break keeps the block's indentation
    model = str(create_scripted(tmp_path_factory.mktemp("break") / "break", "\n    return x",
                                alternative="\n        print(x)"))
    text = "def f(x):\n    if x:\n        y = x\n        return y\n    return 0\n"
    result, stats = await _inline_once(tmp_path, {"model": {"name": model}}, text, 2, len("        y = x"))
    assert result is not None and result.items[0].insert_text == "x\n        print(x)", result
    assert stats["next_best"] == 1 and stats["waste"]["dropped_last"][0][0] == "filters", stats


async def test_a_line_a_loop_cut_short_is_checked_like_any_other(tmp_path_factory, tmp_path) -> None:
    # the model loops ` or "a b or "a b ...`: the repetition filter cuts it after the first
    # copy, which leaves a string open on a line that parsed; what a filter cut is final (it
    # is what is shown), so the line check judges it, and it is dropped
    model = str(create_scripted(tmp_path_factory.mktemp("loop") / "loop", ' or "a b', cycle=True))
    result, stats = await _inline_once(tmp_path, {"model": {"name": model}}, "def f(total):\n    return total\n",
                                       1, len("    return total"))
    assert result is None and stats["last_null"] == "empty", (result, stats)
    assert stats["waste"]["dropped_last"][0][:2] == ["line check", "    return total"], stats
