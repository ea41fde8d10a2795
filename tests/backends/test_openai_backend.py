"""The `openai` backend against a real `loopls serve` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend_servers import ServerProcess, free_port, loopls_serve
from loopls.engine.backends import BackendConfig, BackendError, load_backend
from loopls.engine.backends.base import SamplingParams
from loopls.engine.model.generate import generate

PROMPT = [5, 6, 7, 8, 9, 10, 11, 12]


def _backend(url: str, **kw):
    return load_backend(BackendConfig(kind="openai", model=kw.pop("model", "tiny"), url=url, **kw))


async def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


CANCELLED = 'loopls_requests_total{endpoint="/v1/completions",outcome="cancelled"}'


async def _generating(server: ServerProcess):
    """A backend, one of its requests generating on the server (3,000 tokens to go), and the
    server's metrics from before it."""
    before = server.metrics()
    backend = _backend(server.url)
    stream = backend.submit(PROMPT * 10, SamplingParams(max_tokens=3000, min_tokens=3000))
    async for _ in stream:
        break
    return backend, stream, before


def test_loads_tokenizer_locally_and_limit_from_the_server(loopls_server: ServerProcess, tiny_lm) -> None:
    backend = _backend(loopls_server.url)
    try:
        assert backend.info.backend == "openai" and backend.info.path == loopls_server.url
        assert backend.info.model_type == "iquestloopcoder" and backend.info.untrained
        assert backend.context_limit == 4096  # /v1/models max_model_len
        assert backend.tokenizer.encode("def f():") == tiny_lm.tokenizer.encode("def f():")
    finally:
        backend.shutdown()


def test_context_limit_option_wins(loopls_server: ServerProcess) -> None:
    backend = _backend(loopls_server.url, context_limit=1000)
    assert backend.context_limit == 1000
    with pytest.raises(ValueError, match="exceeds the model's context of 1000"):
        asyncio.run(_submit(backend, list(range(5, 905)), SamplingParams(max_tokens=200)))


async def _submit(backend, ids, params):
    return await backend.submit(ids, params).result()


async def test_streamed_greedy_tokens_equal_the_native_engine(loopls_server: ServerProcess, tiny_lm) -> None:
    backend = _backend(loopls_server.url)
    params = SamplingParams(max_tokens=10, min_tokens=1, stop_token_ids=(0,))
    stream = backend.submit(PROMPT, params)
    streamed = [t async for t in stream]
    out = await stream.result()
    backend.shutdown()
    assert streamed == out.token_ids == generate(tiny_lm, PROMPT, params).token_ids
    assert out.finish_reason == "length" and out.prompt_tokens == len(PROMPT)
    assert out.metrics["time_to_first_token_s"] <= out.metrics["total_s"]


async def test_cancel_closes_the_request_and_the_server_aborts_it(loopls_server: ServerProcess) -> None:
    backend, stream, before = await _generating(loopls_server)
    stream.cancel()
    out = await stream.result()
    assert out.finish_reason == "cancelled" and len(out.token_ids) < 3000
    await _wait_for(lambda: loopls_server.metrics().get(CANCELLED, 0) == before.get(CANCELLED, 0) + 1)
    assert loopls_server.metrics()["loopls_kv_blocks_used"] == 0
    assert backend.stats()["cancelled"] == 1 and backend.stats()["running"] == 0
    backend.shutdown()


async def test_a_second_cancel_while_the_first_closes_still_aborts_on_the_server(loopls_server: ServerProcess) -> None:
    """Cancelling twice (a keystroke, then $/cancelRequest) must not interrupt the closing of
    the HTTP stream that the first cancel started: the server would generate on."""
    backend, stream, before = await _generating(loopls_server)
    stream.cancel()
    for _ in range(3):
        await asyncio.sleep(0)  # the task is now inside its stream's close
        stream.cancel()
    out = await stream.result()
    assert out.finish_reason == "cancelled" and len(out.token_ids) < 3000
    await _wait_for(lambda: loopls_server.metrics().get(CANCELLED, 0) == before.get(CANCELLED, 0) + 1)
    assert loopls_server.metrics()["loopls_kv_blocks_used"] == 0
    await _wait_for(lambda: backend.stats()["running"] == 0)  # the task's done callback
    assert backend.stats()["cancelled"] == 1
    backend.shutdown()


async def test_supersede_cancels_the_previous_request(loopls_server: ServerProcess) -> None:
    backend = _backend(loopls_server.url)
    first = backend.submit(PROMPT, SamplingParams(max_tokens=3000, min_tokens=3000), supersede="doc")
    second = backend.submit(PROMPT, SamplingParams(max_tokens=3), supersede="doc")
    assert (await first.result()).finish_reason == "cancelled"
    assert (await second.result()).finish_reason == "length"
    backend.shutdown()


async def test_server_errors_end_the_request_with_the_server_message(loopls_server: ServerProcess) -> None:
    backend = _backend(loopls_server.url)
    out = await backend.submit([1, 2, 10**6], SamplingParams(max_tokens=2)).result()
    assert out.finish_reason == "error"
    assert "answered 400" in out.error and "vocabulary" in out.error
    backend.shutdown()


def test_wrong_model_name_or_missing_tokenizer_is_a_clear_load_error(loopls_server: ServerProcess, tmp_path) -> None:
    with pytest.raises(BackendError, match=r"serves \['tiny'\], not 'other'"):
        _backend(loopls_server.url, model="other")
    with pytest.raises(BackendError, match="tokenizes locally.*model.tokenizer"):
        _backend(loopls_server.url, tokenizer=str(tmp_path / "nowhere"))
    with pytest.raises(BackendError, match="needs model.url"):
        load_backend(BackendConfig(kind="openai", model="tiny", url=None))


async def test_unreachable_then_recovered(tmp_path, tiny_checkpoint) -> None:
    """A dead server: a fast, clear error per request (retried with backoff only until it is
    known down); when a server answers on that address again, requests work again."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    backend = _backend(url, retries=3)  # loads although nothing listens
    assert backend.reachable is False and backend.context_limit == 4096  # from the checkpoint
    started = time.monotonic()
    out = await backend.submit(PROMPT, SamplingParams(max_tokens=2)).result()
    assert out.finish_reason == "error"
    assert out.error.startswith(f"cannot reach the model server at {url}")
    assert time.monotonic() - started < 5
    server = loopls_serve(port, tmp_path / "serve.log", "--model", "tiny").start()
    try:
        out = await backend.submit(PROMPT, SamplingParams(max_tokens=2)).result()
        assert out.finish_reason == "length" and len(out.token_ids) == 2
        assert backend.reachable is True
        server.stop()
        backend.reachable = True  # as if it had been up: now each request retries with backoff
        before = backend.stats()["connection_errors"]
        started = time.monotonic()
        out = await backend.submit(PROMPT, SamplingParams(max_tokens=2)).result()
        assert out.finish_reason == "error" and "cannot reach" in out.error
        assert backend.stats()["connection_errors"] - before == 3
        assert time.monotonic() - started >= 0.25 + 0.5  # the backoff between the 3 attempts
    finally:
        server.stop()
        backend.shutdown()


def test_api_key_is_sent_as_bearer(tmp_path, tiny_checkpoint) -> None:
    server = loopls_serve(free_port(), tmp_path / "serve.log", "--model", "tiny", "--api-key", "s3cret").start()
    try:
        with pytest.raises(BackendError, match="401"):
            _backend(server.url)
        backend = _backend(server.url, api_key="s3cret")
        out = asyncio.run(_submit(backend, PROMPT, SamplingParams(max_tokens=2)))
        assert out.finish_reason == "length"
        backend.shutdown()
    finally:
        server.stop()
