"""A pause on a line whose full prompt is not warm yet is answered from the short prompt (the
file window alone), and once the full prompt is warm, from it: the completion service on
the real native engine on the CPU, with a scripted checkpoint."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from scripted_model import create_scripted

from loopls.engine.backends import BackendConfig
from loopls.engine.backends.base import Priority, SamplingParams
from loopls.lsp.completion.prompts import QUICK_PROMPT_TOKENS
from loopls.lsp.completion.service import CompletionRequest, CompletionService
from loopls.lsp.model_host import ModelHost
from loopls.lsp.options import CompletionOptions

BODY = "".join(f"def helper_{i}(value):\n    return value * {i} + {i * 7}\n\n\n" for i in range(120))
TEXT = BODY + "def f(x):\n    \n"
CURSOR = len(TEXT) - 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(create_scripted(tmp_path_factory.mktemp("quick") / "call", "compute(x)"))


def _request(text: str, offset: int) -> CompletionRequest:  # an automatic request (typing)
    return CompletionRequest("file:///w/app.py", 1, "app.py", "python", text, offset, invoked=False)


def test_a_cold_line_is_answered_from_the_short_prompt_and_a_warm_one_from_the_full(checkpoint) -> None:
    async def run() -> None:
        with ThreadPoolExecutor(1) as thread:
            models = ModelHost(thread)
            models.configure(BackendConfig(model=checkpoint, device="cpu", context_tokens=2048))
            backend = await models.ready()
            assert backend is not None, models.error
            try:
                service = CompletionService(models, thread, lambda: CompletionOptions())
                # A long generation in the engine: the line's warm-ups (prefill only) get no
                # step while it runs, so the full prompt is not warm when the request decides;
                # it is stopped once the request has chosen the short prompt.
                filler = backend.tokenizer.encode("x = 1\n" * 20)
                busy = asyncio.ensure_future(models.generate(filler, SamplingParams(max_tokens=3000, min_tokens=3000),
                                                             Priority.INLINE))
                await asyncio.sleep(0.05)
                pending = asyncio.ensure_future(service.complete(_request(TEXT, CURSOR)))
                for _ in range(1200):
                    if service.stats.quick or busy.done():
                        break
                    await asyncio.sleep(0.05)
                assert service.stats.quick == 1 and not busy.done()
                busy.cancel()
                first = await asyncio.wait_for(pending, 120)
                assert first is not None and first.suggestions[0].text == "compute(x)"
                assert service.stats.last_engine["prompt_tokens"] <= QUICK_PROMPT_TOKENS
                for _ in range(1200):  # the full prompt's warm-up goes on after the answer
                    if models.stats.warmups_finished >= 2:
                        break
                    await asyncio.sleep(0.05)
                assert models.stats.warmups_finished >= 2, models.stats
                typed = TEXT[:CURSOR] + "v" + TEXT[CURSOR:]  # not what was suggested: no cached answer
                second = await asyncio.wait_for(service.complete(_request(typed, CURSOR + 1)), 120)
                assert second is not None and second.suggestions[0].text == "compute(x)"
                assert service.stats.quick == 1  # the full prompt, warm now
                engine = service.stats.last_engine
                assert engine["prompt_tokens"] > 2 * QUICK_PROMPT_TOKENS
                assert engine["cached_tokens"] >= engine["prompt_tokens"] - 32, engine
            finally:
                models.shutdown()

    asyncio.run(run())


def test_a_one_shot_caller_gets_the_full_prompt_however_cold(checkpoint) -> None:
    async def run() -> None:
        with ThreadPoolExecutor(1) as thread:
            models = ModelHost(thread)
            models.configure(BackendConfig(model=checkpoint, device="cpu", context_tokens=2048))
            assert await models.ready() is not None, models.error
            try:
                service = CompletionService(models, thread, lambda: CompletionOptions(), debounce=False)
                result = await asyncio.wait_for(service.complete(_request(TEXT, CURSOR)), 120)
                assert result is not None and result.suggestions[0].text == "compute(x)"
                assert service.stats.quick == 0 and result.prompt_tokens > 2 * QUICK_PROMPT_TOKENS
            finally:
                models.shutdown()

    asyncio.run(run())
