"""The shipped default model: loaded by default on CPU, trained (no untrained notice), small,
its data manifest proves the held-out packages were excluded, and its greedy completion of a
fixed snippet that is in no training corpus is deterministic and valid Python."""

from __future__ import annotations

import ast
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from loopls.engine.backends import Backend, BackendConfig
from loopls.engine.model.models import DEFAULT_MODEL, default_model_dir
from loopls.lsp.completion.service import CompletionRequest, Completions, CompletionService
from loopls.lsp.model_host import ModelHost
from loopls.lsp.options import CompletionOptions
from training.corpus import HELD_OUT

# Written for this test, so in no training corpus; the cursor is on the new line of a method
# body, after the editor's auto-indent (the commonest place for an inline completion).
SNIPPET = '''import json
from pathlib import Path


class Settings:
    """Settings kept in a JSON file."""

    def __init__(self, path):
        self.path = Path(path)
        self.values = {}

    def load(self):
        with open(self.path, encoding="utf-8") as f:
            self.values = json.load(f)
        return self.values

    def get(self, key, default=None):
        '''
AFTER = "\n\n    def save(self):\n        with open(self.path, \"w\", encoding=\"utf-8\") as f:\n            json.dump(self.values, f)\n"


def _complete_twice(text: str, offset: int, options: CompletionOptions) -> tuple[Backend, list[Completions | None]]:
    """What the server and `loopls complete` load by default, asked twice at the same cursor
    through the completion service (a fresh service each time, so no cached answer)."""

    async def run() -> tuple[Backend, list[Completions | None]]:
        with ThreadPoolExecutor(1) as thread:
            models = ModelHost(thread)
            models.configure(BackendConfig(model=None, device="cpu", context_tokens=options.context_tokens))
            backend = await models.ready()
            assert backend is not None, models.error
            try:
                results = []
                for _ in range(2):
                    service = CompletionService(models, thread, lambda: options, debounce=False)
                    request = CompletionRequest("untitled:settings.py", None, None, "python", text, offset, invoked=False)
                    results.append(await service.complete(request))
                return backend, results
            finally:
                models.shutdown()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def completed() -> tuple[Backend, list[Completions | None]]:
    return _complete_twice(SNIPPET + AFTER, len(SNIPPET), CompletionOptions(max_tokens=32))


def test_the_default_is_the_shipped_trained_model(completed) -> None:
    backend, _ = completed
    info = backend.info
    assert info.model == DEFAULT_MODEL and info.backend == "native"
    assert Path(info.path) == default_model_dir() and Path(info.path).name == DEFAULT_MODEL
    assert not info.untrained  # so no untrained-model notice is shown
    model = backend.engine.core.runner.model
    assert info.device == "cpu" and next(model.parameters()).dtype == torch.float32  # bf16 on disk, fp32 on CPU
    assert model.config.model_type == "iquestloopcoder" and model.config.loop_num == 2


def test_greedy_completion_is_deterministic_and_parses(completed) -> None:
    _, (first, second) = completed
    assert first is not None and second is not None and not second.cached
    texts = [[s.text for s in r.suggestions] for r in (first, second)]
    assert texts[0] == texts[1]
    assert texts[0] and texts[0][0].strip()
    text, offset = SNIPPET + AFTER, len(SNIPPET)
    ast.parse(text[:offset] + texts[0][0] + text[offset:])  # the completion fits the cursor as Python
    assert "self." in texts[0][0]  # it uses the object's own state, as a coder would


def test_shipped_files_are_small_and_complete() -> None:
    folder = default_model_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "manifest.json"} <= names
    assert any(n.endswith(".safetensors") for n in names)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25_000_000


def test_manifest_proves_the_held_out_packages_were_excluded() -> None:
    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    trained = {name.lower() for name in manifest["after_dedup"]}
    assert not trained & set(HELD_OUT)
    assert manifest["rules"]["held_out"] == {k: list(v) for k, v in HELD_OUT.items()}
    excluded = {row["package"].lower() for row in manifest["held_out_exclusions"]}
    assert {"click", "rich", "pygls", "attrs"} <= excluded  # present on a training machine, and refused
    for row in manifest["packages"]:
        if row["files"]:
            assert not row["license"].startswith("refused")
