"""The prefix-cache warm-up of a line, end to end: the real server over stdio with a scripted
checkpoint on the native engine, which prefills the part of the prompt before the cursor's
line without generating a token."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from lsp_session import inline_params, insert, open_document, session, status, wait_for_state
from scripted_model import create_scripted

BODY = "".join(f"def helper_{i}(value):\n    return value * {i} + {i * 7}\n\n\n" for i in range(12))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(create_scripted(tmp_path_factory.mktemp("warm") / "call", "compute(x)"))


async def _type(client, uri: str, line: int, typed: str, first_pause: float = 0.08):
    """Type `typed` at column 4 of `line`, 80 ms a key, each key an inline request that cancels
    the previous one (as VS Code does); the last request's result."""
    pending: list[asyncio.Future] = []
    for i, ch in enumerate(typed):
        if pending and not pending[-1].done():
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"key-{i - 1}"))
        insert(client, uri, i + 2, line, 4 + i, ch)
        pending.append(asyncio.ensure_future(client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, 5 + i), msg_id=f"key-{i}")))
        await asyncio.sleep(first_pause if i == 0 else 0.08)
    result = await asyncio.wait_for(pending[-1], 60)
    await asyncio.gather(*pending[:-1], return_exceptions=True)
    return result


async def test_a_line_is_warmed_without_a_generated_token_and_its_request_hits_the_cache(tmp_path, checkpoint) -> None:
    source = tmp_path / "app.py"
    text = BODY + "def f(x):\n    \n"
    source.write_text(text, encoding="utf-8")
    line = text.count("\n") - 1
    async with session(tmp_path, {"model": {"name": checkpoint}}) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, text)
        result = await _type(client, uri, line, "value = ")
        assert result is not None and result.items[0].insert_text == "compute(x)"
        stats = (await status(client))["stats"]
        assert stats["warmups"] >= 1, stats  # the lines before the cursor's were worth warming
        assert stats["warmup_tokens"] == 0 and stats["wasted_tokens"] == 0, stats  # no token was generated for it
        engine = stats["last_engine"]
        assert engine["cached_tokens"] > 0 and engine["cached_tokens"] < engine["prompt_tokens"], stats




async def test_keystrokes_on_a_warm_line_warm_the_line_so_the_pause_computes_only_its_last_block(
        tmp_path, checkpoint) -> None:
    from loopls.engine.backends.native import CPU_BLOCK_SIZE as BLOCK_SIZE

    source = tmp_path / "app.py"
    text = BODY + "def f(values, weights):\n    \n"
    source.write_text(text, encoding="utf-8")
    line = text.count("\n") - 1
    typed = "total = sum(v * w for v, w in zip(values, weights)) * len(values) + "
    # the shipped model's layout: the text after the cursor first, so the line ends the prompt
    async with session(tmp_path, {"model": {"name": checkpoint}, "completion": {"fimLayout": "spm"}}) as client:
        await wait_for_state(client, "ready")
        uri = source.as_uri()
        open_document(client, uri, text)
        # the line's first key warms what comes before the line; a pause lets that finish
        result = await _type(client, uri, line, typed, first_pause=1.5)
        assert result is not None and result.items[0].insert_text == "compute(x)"
        stats = (await status(client))["stats"]
        assert stats["typed_warmups"] >= 1, stats
        assert stats["warmup_tokens"] == 0 and stats["wasted_tokens"] == 0, stats  # still no token generated
        engine = stats["last_engine"]
        # ~25 tokens of the line were warmed by the keystrokes: the pause's request computes
        # at most the last (partly filled) block and the FIM token after the line
        assert engine["prompt_tokens"] - engine["cached_tokens"] <= BLOCK_SIZE + 1, stats
