"""Servers shared by the backend tests: one `loopls serve` and one vLLM server per run.

Both are package-scoped: they start on first use and stop when the last test of this folder
has run, so nothing idles through the rest of the suite. vLLM comes from its own cached venv
(vllm_env.py), installed by the first run that needs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend_servers import SMALL_ARCHES, ServerProcess, free_port, loopls_serve, vllm_openai_server
from vllm_env import ensure_vllm_python, loopls_path, vllm_env


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """The tiny models gain nothing from intra-op threads; the servers need the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def small_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """create-tiny --size small checkpoints (head_dim 64: vLLM's CPU attention runs them)."""
    from loopls.engine.model.tiny import create_tiny

    root = tmp_path_factory.mktemp("small")
    return {arch: create_tiny(root / arch, arch=arch, size="small", seed=3) for arch in SMALL_ARCHES}


@pytest.fixture(scope="package")
def loopls_server(tmp_path_factory, tiny_checkpoint) -> ServerProcess:
    """`loopls serve` with the untrained tiny model, served as "tiny" (its older name)."""
    server = loopls_serve(free_port(), tmp_path_factory.mktemp("serve") / "serve.log", "--model", "tiny").start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def vllm_python() -> Path:
    return ensure_vllm_python()


@pytest.fixture(scope="package")
def vllm_pythonpath(tmp_path_factory) -> Path:
    return loopls_path(tmp_path_factory.mktemp("vllm-path"))


@pytest.fixture(scope="package")
def vllm_server(vllm_python, small_checkpoints, tmp_path_factory) -> ServerProcess:
    """vLLM's OpenAI server with the small iquestloopcoder checkpoint (served by its path)."""
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    server = vllm_openai_server(vllm_python, small_checkpoints["iquestloopcoder"], free_port(), log, vllm_env()).start()
    yield server
    server.stop()
