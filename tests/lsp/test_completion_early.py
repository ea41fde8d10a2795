"""Answers before the generation ends, end to end: the real server over stdio, pytest-lsp's
client and scripted checkpoints whose output is known. An automatic request at a block
answers with the lines complete when its time is up and the generation runs on into the
cache; an explicit one waits for the whole block; a line the line check rejects is shown
up to its longest start that keeps the line parsing."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from lsp_session import inline_params, insert, open_document, session, status, wait_for_state
from scripted_model import create_scripted

FIRST = "value = compute(x)"
BLOCK = FIRST + "\n    return items or self in values + main - arg * id"  # 22 tokens, all distinct
OPTIONS = {"completion": {"contextTokens": 512}}
# Many silent layers: each token takes tens of milliseconds (65 ms on the 2-core VM), so the
# block is still being written when an automatic request's answer is due (the debounce's
# `answer_by`: 600 ms after the key before any pause was seen); a slower machine only
# answers at the first line break after that.
LAYERS = 160


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("early")
    return {"block": str(create_scripted(base / "block", BLOCK, layers=LAYERS)),
            "call": str(create_scripted(base / "call", "_value("))}


@contextlib.asynccontextmanager
async def _block_session(tmp_path, model: str):
    """A session with `def f(x):` and an empty line of its body open; the client and the uri."""
    source = tmp_path / "app.py"
    source.write_text("def f(x):\n    \n", encoding="utf-8")
    async with session(tmp_path, {**OPTIONS, "model": {"name": model}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), source.read_text())
        yield client, source.as_uri()


async def _until_generated(client, count: int) -> dict:
    deadline = time.monotonic() + 60
    while (stats := (await status(client))["stats"])["completed"] < count:
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.05)
    return stats


async def test_an_automatic_block_answers_with_its_complete_lines_and_the_rest_follows(tmp_path, models) -> None:
    async with _block_session(tmp_path, models["block"]) as (client, uri):
        first = await asyncio.wait_for(client.text_document_inline_completion_async(inline_params(uri, 1, 4)), 60)
        stats = (await status(client))["stats"]
        assert [item.insert_text for item in first.items] == [FIRST], stats  # complete lines only
        assert stats["early"] == 1 and stats["completed"] == 0, stats  # ... while the block is being written
        stats = await _until_generated(client, 1)  # it ran on to its end
        assert stats["cancelled"] == 0 and stats["wasted_tokens"] == 0, stats
        assert stats["waste"]["rest"]["tokens"] > 0, stats  # written after the answer, not shown yet
        # accepting the line shown: the next request, at its end, gets the rest at once
        insert(client, uri, 2, 1, 4, FIRST)
        rest = await client.text_document_inline_completion_async(inline_params(uri, 1, 4 + len(FIRST)))
        assert [item.insert_text for item in rest.items] == [BLOCK[len(FIRST):]], rest
        stats = (await status(client))["stats"]
        assert stats["cache_hits"] == 1 and stats["completed"] == 1, stats
        assert stats["waste"]["rest"]["tokens"] == 0 and stats["waste"]["rest"]["shown_later"] > 0, stats
        assert stats["shown_tokens"] == stats["generated_tokens"], stats  # every token was shown, once


async def test_an_explicit_request_waits_for_the_whole_block(tmp_path, models) -> None:
    async with _block_session(tmp_path, models["block"]) as (client, uri):
        result = await asyncio.wait_for(
            client.text_document_inline_completion_async(inline_params(uri, 1, 4, invoked=True)), 120)
        assert result.items[0].insert_text == BLOCK
        assert (await status(client))["stats"]["early"] == 0


async def test_a_line_the_line_check_rejects_is_shown_up_to_a_start_that_keeps_it_parsing(tmp_path, models) -> None:
    source = tmp_path / "app.py"
    source.write_text("def f(total):\n    result = total\n    return result\n", encoding="utf-8")
    async with session(tmp_path, {**OPTIONS, "model": {"name": models["call"]}}) as client:
        await wait_for_state(client, "ready")
        open_document(client, source.as_uri(), source.read_text())
        result = await client.text_document_inline_completion_async(
            inline_params(source.as_uri(), 1, len("    result = total")))
        # `total_value(` leaves the call open over the next line; `total_value` parses
        # (the item replaces the word typed before the cursor)
        assert result is not None and [item.insert_text for item in result.items] == ["total_value"], result
