"""The engine works on token ids: importing all of it pulls in no editor-side library."""

from __future__ import annotations

import ast
import subprocess
import sys

ENGINE_MODULES = (
    "model.attention", "model.cache", "model.checkpoint", "model.config", "model.generate", "model.hub", "model.layers",
    "model.loader", "model.models", "model.parallel", "model.sampler", "model.sampling_params",
    "model.stop_strings", "model.tiny", "model.tokenizer",
    "model.transformer", "serving.async_engine", "serving.batch", "serving.block_tables",
    "serving.blocks", "serving.core", "serving.graphs", "serving.priority", "serving.request_frontend", "serving.request_output",
    "serving.runner", "serving.scheduler",
    "serving.sequence", "serving.spec",
    "backends", "backends.base", "backends.checkpoint_info", "backends.native", "backends.openai",
    "backends.sse", "backends.vllm", "server", "server.app", "server.chat", "server.metrics",
    "server.protocol", "server.run",
)


def test_engine_imports_no_editor_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import loopls.engine.{m}\n" for m in ENGINE_MODULES)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pygls', 'lsprotocol', 'tree_sitter', 'git', 'loopls')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)  # a printed list of module names
    assert {f"loopls.engine.{m}" for m in ENGINE_MODULES} <= set(loaded)
    assert not [m for m in loaded if not m.startswith("loopls")]
    assert not [m for m in loaded if m.startswith(("loopls.lsp", "loopls.context"))]
