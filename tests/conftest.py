"""Shared test set-up.

Every test session gets its own loopls cache directory, so the untrained tiny-random model is
created fresh (as on a new machine) and never touches the user's cache. Server processes
started by the tests inherit it through the environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="loopls-test-cache-"))
os.environ["LOOPLS_CACHE_DIR"] = str(_SESSION_CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Without a GPU the Triton kernels are tested in Triton's interpreter. The interpreter is
# chosen when triton is first imported, and other tests import it too (transformers does),
# so it is chosen here, for the whole session; nothing else runs Triton on such a machine.
if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The tiny random model (created on first use): fast, for tests of the machinery."""
    from loopls.engine.model.models import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_lm(tiny_checkpoint: Path):
    from loopls.engine.model.loader import load_checkpoint

    return load_checkpoint(tiny_checkpoint)
