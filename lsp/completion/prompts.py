"""A completion request's prompts, built on the prepare thread.

The prompt is the context engine's packed prompt when the project is indexed (its other
files' part kept across requests, `sticky.py`), else the buffer's own FIM window
(`context.assemble.buffer_prompt`); either way redacted and checked once more, decoded,
before it is sent. On an engine that runs on this machine's CPU a line also gets a short
prompt, the file window alone (`QUICK_PROMPT_TOKENS`): a new line's warm-up of the full
prompt takes a second or more there, and a pause that ends before it is answered from the
short one (`service.py`), whose own warm-up runs first and takes a fraction of that. Only
while the user types (a service with a debounce): a one-shot caller waits for the full one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopls.context.assemble import buffer_prompt
from loopls.context.languages import Languages
from loopls.context.packing import PackedContext, Packer
from loopls.engine.backends import Backend

from ..model_host import ModelHost, PromptRefused, guard_prompt
from ..options import CompletionOptions
from .postprocess import Site
from .site import SiteReader
from .sticky import StickyContext
from .warmup import LineStart, line_start, stable_prefix

log = logging.getLogger(__name__)
MIN_PROMPT_BUDGET = 32
# The short prompt of a cold line: its prefill costs a quarter of a 2K prompt's, and the
# file window alone scored as the packed 2K prompt on held-out line targets
# (docs/benchmarks.md, issue 10).
QUICK_PROMPT_TOKENS = 512

# (tokenizer, uri, version, text, offset, budget, layout) -> the packed prompt, or None for buffer-only
ContextProvider = Callable[[Any, str, "int | None", str, int, int, "str | None"], "PackedContext | None"]


@dataclass(frozen=True)
class CompletionRequest:
    uri: str
    version: int | None
    path: str | None  # the file's path (for its language and the prompt label); None if untitled
    language: str | None  # tree-sitter language name, if loopls parses it
    text: str  # the document at `version`
    offset: int  # the cursor, a code-point offset into `text`
    invoked: bool  # the user asked (no debounce, several candidates)


@dataclass(frozen=True)
class Prepared:
    ids: list[int]
    site: Site
    context_files: int
    stable: int  # how many leading ids stay the same while the user types on this line
    quick: list[int] | None = None  # the short prompt, for a pause before `ids` is warm (a CPU engine)
    quick_stable: int = 0
    line: LineStart | None = None  # where the cursor's line starts in `ids`, for the keystrokes on it
    quick_line: LineStart | None = None  # ... in `quick`


class PromptBuilder:
    """Used on the prepare thread only (and `forget`)."""

    def __init__(self, models: ModelHost, context: ContextProvider | None, label: Callable[[str | None], str | None],
                 counts: dict[str, int], quick: bool = True) -> None:
        self.models = models
        self.quick = quick  # whether a line gets a short prompt (on a CPU engine)
        self.context = context
        self.label = label  # the path shown in a buffer-only prompt
        self._sites = SiteReader(Languages())
        self._sticky = StickyContext(counts)
        self._packers: dict[int, Packer] = {}

    def build(self, req: CompletionRequest, backend: Backend, options: CompletionOptions) -> Prepared | None:
        site = self._sites.read(req.text, req.offset, req.language)
        budget = min(options.context_tokens, backend.context_limit - options.max_tokens - 1)
        if budget < MIN_PROMPT_BUDGET:
            # the model's context, not the document, is what is too small: name both settings
            log.error("the model's context of %d tokens (max_position_embeddings) leaves no room for a prompt "
                      "next to %d generated tokens (completion.maxTokens)", backend.context_limit, options.max_tokens)
            return None
        tokenizer = backend.tokenizer
        layout = options.layout
        packed = (self.context(tokenizer, req.uri, req.version, req.text, req.offset, budget, layout)
                  if self.context else None)
        try:
            if packed is None:
                packed = buffer_prompt(self._packer(tokenizer), self.label(req.path), req.text, req.offset, budget,
                                       layout)
        except ValueError as exc:
            log.error("%s: no prompt: %s", req.uri, exc)
            return None
        files = len({s.path for s in packed.snippets if s.source != "current"})
        current = packed.snippets[-1] if packed.snippets else None
        window = (current.start_line, current.end_line) if current is not None else None
        ids, files = self._sticky.prompt(req.uri, req.text, req.offset, packed.token_ids, packed.context_tokens,
                                         files, budget, window)
        if not ids and tokenizer.special.bos is not None:
            ids = [tokenizer.special.bos]  # an empty buffer and no FIM tokens: start from nothing
        quick = self._quick(req, backend, layout) if len(ids) > 2 * QUICK_PROMPT_TOKENS else None
        try:
            guard_prompt(backend, ids)
            if quick is not None:
                guard_prompt(backend, quick)
        except PromptRefused as exc:
            self.models.stats.refused_prompts += 1
            log.error("%s: %s", req.uri, exc)
            return None
        stable = stable_prefix(ids, tokenizer)
        quick_stable = stable_prefix(quick, tokenizer) if quick is not None else 0
        return Prepared(ids, site, files, stable, quick, quick_stable,
                        line_start(ids, stable, req.text, req.offset, tokenizer),
                        line_start(quick, quick_stable, req.text, req.offset, tokenizer) if quick is not None else None)

    def _quick(self, req: CompletionRequest, backend: Backend, layout: str | None) -> list[int] | None:
        """The short prompt of an automatic request, on an engine that runs on this machine's
        CPU (a remote server's warm-ups generate a token each; a GPU warms a full prompt in
        time)."""
        if not self.quick or not backend.info.prefill_only or (backend.info.device or "") != "cpu" or req.invoked:
            return None
        try:
            packed = buffer_prompt(self._packer(backend.tokenizer), self.label(req.path), req.text, req.offset,
                                   QUICK_PROMPT_TOKENS, layout)
        except ValueError:  # too small for the window's labels: the full prompt serves alone
            return None
        return packed.token_ids or None

    def _packer(self, tokenizer) -> Packer:
        packer = self._packers.get(id(tokenizer))
        if packer is None or packer.counter is not tokenizer:
            packer = self._packers[id(tokenizer)] = Packer(tokenizer, tokenizer.special)
        return packer

    def forget(self, uri: str) -> None:
        self._sticky.forget(uri)

    def tracked(self) -> dict[str, int]:
        return {"sticky_documents": len(self._sticky),
                "packed_chars": sum(p.remembered_chars for p in self._packers.values())}
