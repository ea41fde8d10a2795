"""One completion, from document text and cursor offset to cleaned items.

Shared by the language server and `loopls complete`, so the CLI shows exactly what an editor
gets. Runs synchronously: the server calls it from its engine thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopls.context.prompt import build_fim_prompt, fim_token_ids
from loopls.engine.generate import Generation, generate
from loopls.engine.loader import LoadedModel
from loopls.engine.sampler import SamplingParams

from .options import CompletionOptions
from .postprocess import clean_completion

UNTRAINED_NOTICE = (
    "loopls is using its untrained tiny default model: completions are random text that "
    "only proves the pipeline works. Set `model.name` to a real checkpoint for useful output."
)


@dataclass
class Completion:
    items: list[str]
    generation: Generation
    prompt_tokens: int
    truncated_context: bool


class Completer:
    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self._lock = threading.Lock()  # one generation at a time on this model
        # Set by the server's context engine (context_features.py) once a workspace is indexed:
        # (tokenizer, text, offset, budget) -> (prompt ids, truncated), or None for buffer-only.
        self.context: Callable[[Any, str, int, int], tuple[list[int], bool] | None] | None = None

    @property
    def untrained(self) -> bool:
        return self.lm.untrained

    def complete(
        self, text: str, offset: int, options: CompletionOptions, cancel: threading.Event | None = None
    ) -> Completion:
        lm = self.lm
        budget = min(options.context_tokens, lm.config.max_position_embeddings - options.max_tokens - 1)
        special = lm.tokenizer.special
        packed = self.context(lm.tokenizer, text, offset, budget) if self.context is not None else None
        if packed is not None:
            ids, truncated = packed
        else:
            prompt = build_fim_prompt(text, offset, lm.tokenizer, budget)
            ids = fim_token_ids(prompt, special) or ([special.bos] if special.bos is not None else [])
            truncated = prompt.truncated
        rest_of_line = text[offset:].split("\n", 1)[0]
        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            min_tokens=1,
            # Mid-line, complete only the line; at a line end, a block may follow.
            stop=("\n",) if rest_of_line.strip() else (),
            stop_token_ids=tuple(sorted(special.all_ids)),
        )
        with self._lock:
            gen = generate(lm, ids, params, cancel)
        cleaned = clean_completion(gen.text, text[offset:], options.max_lines)
        return Completion([cleaned] if cleaned else [], gen, len(ids), truncated)
