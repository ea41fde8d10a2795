"""The shipped default model: loaded by default on CPU, trained (no untrained notice), small,
its data manifest proves the held-out packages were excluded, and its greedy completion of a
fixed snippet that is in no training corpus is deterministic and valid Python."""

from __future__ import annotations

import ast
import asyncio
import json

import pytest

from loopls.engine.backends.native import load_native
from loopls.engine.model.models import DEFAULT_MODEL, default_model_dir
from loopls.lsp.completion import Completer
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


@pytest.fixture(scope="module")
def completer():
    backend = load_native(None, "cpu")  # what the server and `loopls complete` load by default
    yield Completer(backend)
    backend.shutdown()


def _complete(completer: Completer, text: str, offset: int, options: CompletionOptions) -> tuple[list[int], list[str]]:
    prepared = completer.prepare(text, offset, options)

    async def run():
        return await completer.backend.submit(prepared.ids, prepared.params).result()

    out = asyncio.run(run())
    return out.token_ids, completer.finish(out.token_ids, prepared.params, text, offset, options)


def test_the_default_is_the_shipped_trained_model(completer: Completer) -> None:
    lm = completer.backend.lm
    assert completer.backend.info.model == DEFAULT_MODEL
    assert lm.path == default_model_dir() and lm.path.name == DEFAULT_MODEL
    assert not lm.untrained and not completer.untrained  # so no untrained-model notice is shown
    assert lm.device.type == "cpu" and str(lm.dtype) == "torch.float32"  # bf16 on disk, fp32 on CPU
    assert lm.config.model_type == "iquestloopcoder" and lm.config.loop_num == 2


def test_greedy_completion_is_deterministic_and_parses(completer: Completer) -> None:
    text = SNIPPET + AFTER
    offset = len(SNIPPET)
    options = CompletionOptions(max_tokens=32)
    first_ids, first = _complete(completer, text, offset, options)
    second_ids, second = _complete(completer, text, offset, options)
    assert first_ids == second_ids and first == second
    assert first and first[0].strip()
    completed = text[:offset] + first[0] + text[offset:]
    ast.parse(completed)  # the completion fits the cursor as Python
    assert "self." in first[0]  # it uses the object's own state, as a coder would


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
