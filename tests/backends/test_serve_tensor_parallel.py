"""`loopls serve --tensor-parallel-size N` over real HTTP on 127.0.0.1: the native engine split
over CPU ranks (gloo worker processes) answers with the tokens one process gives."""

from __future__ import annotations

import subprocess
import sys

import httpx

from backend_servers import free_port, loopls_serve
from loopls.engine.model.generate import generate
from loopls.engine.model.sampling_params import SamplingParams

PROMPT = [5, 6, 7, 8, 9, 10, 11, 12]


def test_two_cpu_ranks_serve_the_tokens_of_one_process(tmp_path, tiny_checkpoint, tiny_lm) -> None:
    server = loopls_serve(free_port(), tmp_path / "serve.log", "--model", "tiny", "--device", "cpu",
                          "--tensor-parallel-size", "2").start()
    try:
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 0, "return_token_ids": True}
        choice = httpx.post(f"{server.url}/completions", json=body, timeout=120).json()["choices"][0]
    finally:
        server.stop()
    assert choice["token_ids"] == generate(tiny_lm, PROMPT, SamplingParams(max_tokens=12)).token_ids


def test_a_size_that_does_not_divide_the_heads_is_refused(tiny_checkpoint) -> None:
    done = subprocess.run([sys.executable, "-m", "loopls.lsp", "serve", "--model", "tiny", "--device", "cpu", "--port", str(free_port()),
                           "--tensor-parallel-size", "3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "loopls serve: tensor-parallel size 3 does not divide num_attention_heads 4; valid sizes for this model: 1, 2, 4" in done.stderr, done.stderr
