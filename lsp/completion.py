"""One completion, from document text and cursor offset to cleaned items.

Shared by the language server and `loopls complete`, so the CLI shows exactly what an editor
gets. `prepare` builds the prompt, `finish` turns generated ids into items; between them the
request runs on the engine backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopls.context.prompt import FIM_OVERHEAD_TOKENS, build_fim_prompt, fim_token_ids
from loopls.engine.backends import Backend
from loopls.engine.model.generate import cut_at_stop
from loopls.engine.model.sampler import SamplingParams

from .options import CompletionOptions
from .postprocess import clean_completion

UNTRAINED_NOTICE = (
    "loopls is using its untrained tiny default model: completions are random text that "
    "only proves the pipeline works. Set `model.name` to a real checkpoint for useful output."
)


@dataclass(frozen=True)
class PreparedCompletion:
    ids: list[int]
    params: SamplingParams
    truncated: bool


class Completer:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # Set by the server's context engine (context_features.py) once a workspace is indexed:
        # (tokenizer, text, offset, budget) -> (prompt ids, truncated), or None for buffer-only.
        self.context: Callable[[Any, str, int, int], tuple[list[int], bool] | None] | None = None

    @property
    def untrained(self) -> bool:
        return self.backend.info.untrained

    def prepare(self, text: str, offset: int, options: CompletionOptions) -> PreparedCompletion:
        """Prompt ids and sampling parameters for a completion at `offset` (no model call)."""
        tokenizer = self.backend.tokenizer
        limit = self.backend.context_limit
        budget = min(options.context_tokens, limit - options.max_tokens - 1)
        if budget <= FIM_OVERHEAD_TOKENS:
            # the model's context, not the document, is what is too small: say so
            raise ValueError(f"the model's context of {limit} tokens (max_position_embeddings) leaves no room "
                             f"for a prompt next to {options.max_tokens} generated tokens (completion.maxTokens)")
        special = tokenizer.special
        packed = self.context(tokenizer, text, offset, budget) if self.context is not None else None
        if packed is not None:
            ids, truncated = packed
        else:
            prompt = build_fim_prompt(text, offset, tokenizer, budget)
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
        return PreparedCompletion(ids, params, truncated)

    def finish(self, token_ids: list[int], params: SamplingParams, text: str, offset: int,
               options: CompletionOptions) -> list[str]:
        """Generated ids -> the items an editor shows."""
        generated, _ = cut_at_stop(self.backend.tokenizer.decode(token_ids), params.stop)
        cleaned = clean_completion(generated, text[offset:], options.max_lines)
        return [cleaned] if cleaned else []
