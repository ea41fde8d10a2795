"""`loopls serve` over real HTTP on 127.0.0.1: endpoints, SSE, API key, limits, disconnects."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from backend_servers import ServerProcess, free_port, loopls_serve
from loopls.engine.model.generate import generate
from loopls.engine.model.sampling_params import SamplingParams

KEY = "test-key-1234"
PROMPT = [5, 6, 7, 8, 9, 10, 11, 12]


def _events(response: httpx.Response) -> list[dict]:
    """The JSON events of an SSE body, checking it ends with [DONE]."""
    data = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_checkpoint) -> ServerProcess:
    """A server with an API key and small limits."""
    server = loopls_serve(
        free_port(), tmp_path_factory.mktemp("guarded") / "serve.log", "--model", "tiny", "--api-key", KEY,
        "--max-concurrent", "1", "--max-body-bytes", "4096", "--max-prompt-tokens", "64",
    ).start()
    yield server
    server.stop()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_health_and_models(loopls_server: ServerProcess) -> None:
    assert httpx.get(f"{loopls_server.root}/health").json()["status"] == "ok"
    models = httpx.get(f"{loopls_server.url}/models").json()["data"]
    assert [m["id"] for m in models] == ["tiny"]
    assert models[0]["max_model_len"] == 4096


def test_completion_tokens_equal_the_native_engine(loopls_server: ServerProcess, tiny_lm) -> None:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0, "return_token_ids": True}
    answer = httpx.post(f"{loopls_server.url}/completions", json=body, timeout=60).json()
    choice = answer["choices"][0]
    expected = generate(tiny_lm, PROMPT, SamplingParams(max_tokens=12))
    assert choice["token_ids"] == expected.token_ids
    assert choice["text"] == expected.text
    assert choice["finish_reason"] == expected.finish_reason == "length"
    assert answer["usage"] == {"prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20}


def test_sse_stream_carries_the_same_tokens_and_text(loopls_server: ServerProcess) -> None:
    body = {"prompt": "def area(radius):\n", "max_tokens": 10, "temperature": 0, "return_token_ids": True}
    whole = httpx.post(f"{loopls_server.url}/completions", json=body, timeout=60).json()["choices"][0]
    with httpx.stream("POST", f"{loopls_server.url}/completions", json=body | {"stream": True}, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    assert len(events) >= 3  # streamed token by token, not in one piece
    choices = [e["choices"][0] for e in events]
    assert [t for c in choices for t in c["token_ids"]] == whole["token_ids"]
    assert "".join(c["text"] for c in choices) == whole["text"]
    assert choices[-1]["finish_reason"] == "length" and all(c["finish_reason"] is None for c in choices[:-1])
    assert choices[0]["prompt_token_ids"]  # the prompt's ids come once, on the first event


def test_chat_completion_json_and_stream(loopls_server: ServerProcess) -> None:
    body = {"messages": [{"role": "user", "content": "write a loop"}], "max_tokens": 6, "temperature": 0}
    answer = httpx.post(f"{loopls_server.url}/chat/completions", json=body, timeout=60).json()
    message = answer["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    # the ChatML template's special tokens became single ids: "<|im_start|>user\n…" is short
    assert answer["usage"]["prompt_tokens"] < len("<|im_start|>user\nwrite a loop<|im_end|>\n<|im_start|>assistant\n") // 2
    with httpx.stream("POST", f"{loopls_server.url}/chat/completions", json=body | {"stream": True}, timeout=60) as r:
        events = _events(r)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == message["content"]
    assert events[-1]["object"] == "chat.completion.chunk"


def test_stop_string_cuts_the_text(loopls_server: ServerProcess) -> None:
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    text = httpx.post(f"{loopls_server.url}/completions", json=body, timeout=60).json()["choices"][0]["text"]
    stop = text[3:5]
    assert stop and text.find(stop) >= 0
    cut = httpx.post(f"{loopls_server.url}/completions", json=body | {"stop": [stop]}, timeout=60).json()["choices"][0]
    assert cut["text"] == text[: text.find(stop)]
    assert cut["finish_reason"] == "stop"


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": PROMPT, "n": 2}, 400, "n=1"),
    ({"prompt": PROMPT, "suffix": "x"}, 400, "suffix"),
    ({"prompt": PROMPT, "max_tokens": "many"}, 400, "max_tokens"),
    ({"prompt": [["a"], ["b"]]}, 400, "prompt"),
    ({"prompt": [1, 2, 999999]}, 400, "vocabulary"),
    ({"prompt": PROMPT, "max_tokens": 5000}, 400, "the model allows 4096"),
    ({"prompt": PROMPT, "model": "gpt-4"}, 404, "not served"),
    ({"messages": "hi"}, 400, "messages"),
])
def test_bad_requests_get_a_status_and_a_message(loopls_server: ServerProcess, body, status, words) -> None:
    path = "chat/completions" if "messages" in body else "completions"
    r = httpx.post(f"{loopls_server.url}/{path}", json=body, timeout=30)
    assert r.status_code == status
    assert words in r.json()["error"]["message"]


def test_not_json_is_400(loopls_server: ServerProcess) -> None:
    r = httpx.post(f"{loopls_server.url}/completions", content=b"{not json", timeout=30)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


def test_api_key_refused_then_accepted(guarded: ServerProcess) -> None:
    body = {"prompt": PROMPT, "max_tokens": 2}
    assert httpx.post(f"{guarded.url}/completions", json=body).status_code == 401
    wrong = httpx.post(f"{guarded.url}/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{guarded.url}/models").status_code == 401
    assert httpx.post(f"{guarded.url}/completions", json=body, headers=_auth(), timeout=60).status_code == 200
    assert httpx.get(f"{guarded.url}/models", headers=_auth()).status_code == 200
    # probes and scrapes need no key
    assert httpx.get(f"{guarded.root}/health").status_code == 200
    assert httpx.get(f"{guarded.root}/metrics").status_code == 200


def test_non_loopback_bind_without_a_key_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "loopls.lsp", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120, env=_without_key())
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr


def test_bind_rule() -> None:
    from loopls.engine.server import ServeError, check_bind

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ServeError):
            check_bind(host, None)
        check_bind(host, "a-key")


def _without_key() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "LOOPLS_API_KEY"}


def test_oversize_body_is_413(guarded: ServerProcess) -> None:
    big = {"prompt": "x" * 5000, "max_tokens": 1}
    r = httpx.post(f"{guarded.url}/completions", json=big, headers=_auth())
    assert r.status_code == 413 and "4096 bytes" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(f"{guarded.url}/completions", content=chunks(), headers=_auth())
    assert r.status_code == 413


def test_prompt_over_the_token_limit_is_400(guarded: ServerProcess) -> None:
    r = httpx.post(f"{guarded.url}/completions", json={"prompt": list(range(5, 75)), "max_tokens": 1}, headers=_auth())
    assert r.status_code == 400
    assert "prompt of 70 tokens exceeds the limit of 64 tokens" in r.json()["error"]["message"]


def test_too_many_concurrent_requests_is_429(guarded: ServerProcess) -> None:
    body = {"prompt": PROMPT, "max_tokens": 3000, "stream": True, "min_tokens": 3000}
    with httpx.Client(timeout=60, headers=_auth()) as client:
        with client.stream("POST", f"{guarded.url}/completions", json=body) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)  # generating now
            second = httpx.post(f"{guarded.url}/completions", json={"prompt": PROMPT, "max_tokens": 1}, headers=_auth())
            assert second.status_code == 429
            assert "too many concurrent requests (limit 1)" in second.json()["error"]["message"]
            assert second.headers["retry-after"] == "1"
    # the first request's disconnect freed its slot
    _wait_for(lambda: guarded.metrics()["loopls_requests_in_flight"] == 0)
    assert httpx.post(f"{guarded.url}/completions", json={"prompt": PROMPT, "max_tokens": 1},
                      headers=_auth(), timeout=60).status_code == 200
    assert guarded.metrics()['loopls_requests_total{endpoint="/v1/completions",outcome="rejected"}'] >= 1


def test_streaming_client_that_disconnects_aborts_and_frees_its_blocks(loopls_server: ServerProcess) -> None:
    before = loopls_server.metrics()
    cancelled = 'loopls_requests_total{endpoint="/v1/completions",outcome="cancelled"}'
    body = {"prompt": PROMPT * 20, "max_tokens": 3000, "min_tokens": 3000, "stream": True}
    with httpx.stream("POST", f"{loopls_server.url}/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data:"):
            pass
        assert loopls_server.metrics()["loopls_kv_blocks_used"] > 0  # it holds blocks while generating
    _wait_for(lambda: loopls_server.metrics().get(cancelled, 0) == before.get(cancelled, 0) + 1)
    after = loopls_server.metrics()
    assert after["loopls_kv_blocks_used"] == 0
    assert after["loopls_num_requests_running"] == 0
    assert after["loopls_generation_tokens_total"] - before["loopls_generation_tokens_total"] < 3000


def test_non_streaming_client_that_disconnects_aborts(loopls_server: ServerProcess) -> None:
    cancelled = 'loopls_requests_total{endpoint="/v1/completions",outcome="cancelled"}'
    before = loopls_server.metrics().get(cancelled, 0)
    body = {"prompt": PROMPT, "max_tokens": 3000, "min_tokens": 3000}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{loopls_server.url}/completions", json=body, timeout=httpx.Timeout(10, read=1.0))
    _wait_for(lambda: loopls_server.metrics().get(cancelled, 0) == before + 1)
    assert loopls_server.metrics()["loopls_kv_blocks_used"] == 0


def test_metrics_count_requests_tokens_and_prefix_cache_hits(loopls_server: ServerProcess) -> None:
    prompt = list(range(20, 120))  # several full blocks, so a repeat hits the prefix cache
    before = loopls_server.metrics()
    for _ in range(2):
        r = httpx.post(f"{loopls_server.url}/completions", json={"prompt": prompt, "max_tokens": 4, "temperature": 0}, timeout=60)
        assert r.status_code == 200
    after = loopls_server.metrics()
    ok = 'loopls_requests_total{endpoint="/v1/completions",outcome="length"}'
    assert after[ok] - before.get(ok, 0) == 2
    assert after["loopls_prompt_tokens_total"] - before["loopls_prompt_tokens_total"] == 200
    assert after["loopls_generation_tokens_total"] - before["loopls_generation_tokens_total"] == 8
    assert after["loopls_prefix_cache_hit_tokens_total"] - before["loopls_prefix_cache_hit_tokens_total"] >= 64
    assert after["loopls_prefix_cache_hit_blocks_total"] > before["loopls_prefix_cache_hit_blocks_total"]
    assert after["loopls_kv_blocks_total"] > 0 and after["loopls_kv_cache_usage_ratio"] == 0
    assert after['loopls_request_duration_seconds_count{endpoint="/v1/completions"}'] >= 2


def test_doctor_shows_the_backends_and_checks_a_server(loopls_server: ServerProcess) -> None:
    def doctor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "loopls.lsp", "doctor", *args], capture_output=True,
                              text=True, timeout=120, env=_without_key())

    ok = doctor("--url", loopls_server.url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "backends (model.backend):" in ok.stdout and "openai" in ok.stdout and "vllm" in ok.stdout
    assert "ok  model tiny (context 4096)" in ok.stdout
    dead = doctor("--url", f"http://127.0.0.1:{free_port()}/v1")
    assert dead.returncode == 1 and "cannot reach the model server" in dead.stdout
