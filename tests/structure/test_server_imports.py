"""The language server process imports no torch: its engine runs in an engine process of its
own (engine/serving/standby.py), which imports torch while the server imports itself and
answers `initialize`. On two cores a server importing torch too (about 1.7 s of CPU) would
delay both. What the `loopls lsp` command imports before it serves is imported here in a fresh
interpreter; a torch import anywhere under it fails the test with the chain of loopls modules
that led to it. The same holds with the `openai` backend loaded (the model runs elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What `loopls lsp` imports before it reads the first message (cli._run_lsp).
SERVER_MODULES = ("loopls.lsp.cli", "loopls.engine.serving.standby", "loopls.lsp.features", "loopls.lsp.transport",
                  "loopls.lsp.server")

# In the fresh interpreter: a finder ahead of the others notes the loopls frames importing
# torch the first time it is looked up (and then lets the import go on).
PROBE = """
import importlib, json, sys, traceback
chain = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch" and not chain:
            chain.extend(f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if "/loopls" in f.filename
                         or any(f"/{p}/" in f.filename for p in ("lsp", "context", "engine", "kernels")))
        return None
sys.meta_path.insert(0, Watch())
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"), "chain": chain}))
"""


@pytest.mark.parametrize("modules", [SERVER_MODULES, (*SERVER_MODULES, "loopls.engine.backends.openai")],
                         ids=["the server", "the server with the openai backend loaded"])
def test_the_server_process_imports_no_torch(modules: tuple[str, ...]):
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True,
                         timeout=120, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert not found["torch"], f"{len(found['torch'])} torch modules, imported through:\n" + "\n".join(found["chain"])
