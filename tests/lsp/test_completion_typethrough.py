"""Generations in flight while the user types, end to end: the real server over stdio,
pytest-lsp's client and scripted checkpoints whose output is known. A keystroke that types
what the running generation writes keeps it (the pause answers with the rest); a divergent
one cancels it; a single-line site's engine request ends at the line break, or as soon as
the filters have cut the line short."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from lsprotocol import types
from lsp_session import inline_params, insert, open_document, session, status, wait_for_state
from scripted_model import create_scripted
from tokenizers import Tokenizer

# A long single-line generation: the cycle never writes a line break, and its unit is too long
# for the repetition filter (which would end it early), so the request runs to maxTokens
# (hundreds of steps) and a keystroke can reach it while it runs.
LONG = {"model": {"name": None}, "completion": {"maxTokens": 400, "contextTokens": 512}}
LINE = "value = "


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("typethrough")
    return {"cycle": str(create_scripted(base / "cycle", "compute(x) or items if None; ", cycle=True)),
            "lines": str(create_scripted(base / "lines", "total\nrest")),
            "loop": str(create_scripted(base / "loop", "compute(x)", cycle=True))}


def _options(model: str) -> dict:
    return {**LONG, "model": {"name": model}}


async def _start_generation(client, uri: str) -> asyncio.Future:
    """Ask at the end of `value = ` and return once its generation has written a token (a
    keystroke before that starts a new generation: there is nothing to agree with yet)."""
    first = asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 4 + len(LINE)), msg_id="key-0"))
    deadline = time.monotonic() + 60
    while (await status(client))["stats"]["newest_tokens"] < 1:
        assert time.monotonic() < deadline and not first.done(), "no generation started"
        await asyncio.sleep(0.01)
    return first


def _type(client, uri: str, text: str) -> asyncio.Future:
    """Type `text` after `value = ` as an editor does: the change, a cancel of the open
    request, a new automatic request at the new cursor."""
    insert(client, uri, 2, 1, 4 + len(LINE), text)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="key-0"))
    return asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 4 + len(LINE) + len(text)), msg_id="key-1"))


@contextlib.asynccontextmanager
async def _typed_during_generation(tmp_path, checkpoint: str, typed: str):
    """A session where a generation is running when the user types `typed`: yields the
    client and the answer to the request after the keystroke."""
    source = tmp_path / "app.py"
    source.write_text(f"def f(x):\n    {LINE}\n", encoding="utf-8")
    async with session(tmp_path, _options(checkpoint)) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, source.read_text())
        first = await _start_generation(client, uri)
        second = await asyncio.wait_for(_type(client, uri, typed), 120)
        await asyncio.gather(first, return_exceptions=True)
        yield client, second


async def test_typing_what_the_generation_writes_keeps_it_and_the_pause_gets_the_rest(tmp_path, models) -> None:
    async with _typed_during_generation(tmp_path, models["cycle"], "co") as (client, second):
        item = second.items[0]
        assert item.insert_text.startswith("compute(x)")  # the word typed so far and what follows it
        assert item.range.start == types.Position(line=1, character=4 + len(LINE))
        stats = (await status(client))["stats"]
        assert stats["kept"] == 1 and stats["typed_through"] == 1, stats
        assert stats["cancelled"] == 0 and stats["cancelled_generations"] == 0, stats
        assert stats["completed"] == 1, stats  # one generation served both keystrokes
        assert stats["wasted_tokens"] == stats["warmup_tokens"], stats  # its tokens were used
        assert stats["generated_tokens"] - stats["warmup_tokens"] == 400, stats


async def test_a_divergent_keystroke_cancels_the_generation_and_counts_its_tokens_as_waste(tmp_path, models) -> None:
    async with _typed_during_generation(tmp_path, models["cycle"], "z") as (client, second):
        assert second is not None and second.items[0].insert_text.startswith("z")  # its own generation
        stats = (await status(client))["stats"]
        assert stats["cancelled"] == 1 and stats["cancelled_generations"] == 1, stats
        assert stats["kept"] == 0 and stats["typed_through"] == 0, stats
        deadline = time.monotonic() + 10  # the cancelled request's tokens are counted when it ends
        while stats["wasted_tokens"] == stats["warmup_tokens"]:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.05)
            stats = (await status(client))["stats"]
        assert 0 < stats["wasted_tokens"] - stats["warmup_tokens"] < 400, stats


async def _complete_after_line(tmp_path, model: str) -> tuple[types.InlineCompletionList, dict]:
    """An automatic request at the end of LINE in a function body: the answer and the stats."""
    source = tmp_path / "app.py"
    source.write_text(f"def f(x):\n    {LINE}\n", encoding="utf-8")
    async with session(tmp_path, _options(model)) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, source.read_text())
        result = await client.text_document_inline_completion_async(inline_params(uri, 1, 4 + len(LINE)))
        return result, (await status(client))["stats"]


async def test_a_single_line_site_stops_generating_at_the_line_break(tmp_path, models) -> None:
    result, stats = await _complete_after_line(tmp_path, models["lines"])
    assert result.items[0].insert_text == "total"
    tokenizer = Tokenizer.from_file(f"{models['lines']}/tokenizer.json")
    through_break = len(tokenizer.encode("total\n").ids)
    assert len(tokenizer.encode("total\nrest").ids) > through_break  # the script goes on after the break
    assert stats["last_engine"]["tokens"] <= through_break, stats  # ... the engine did not
    assert stats["generated_tokens"] - stats["warmup_tokens"] <= through_break, stats


async def test_a_line_the_filters_cut_short_stops_generating(tmp_path, models) -> None:
    result, stats = await _complete_after_line(tmp_path, models["loop"])
    assert result.items[0].insert_text == "compute(x)"  # the repetition filter's cut, as before
    per_copy = len(Tokenizer.from_file(f"{models['loop']}/tokenizer.json").encode("compute(x)").ids)
    assert stats["last_engine"]["tokens"] <= 5 * per_copy, stats  # not the 400 of maxTokens
    assert stats["generated_tokens"] - stats["warmup_tokens"] <= 6 * per_copy, stats
