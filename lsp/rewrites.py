"""Model-driven refactors on the engine backend: the prompt (the project context packed for
the target, then the instruction quoting the target code, both redacted) and one greedy
request at code-action priority, through the server's model host (the prompt is checked for
secrets before it is sent, like every prompt). The answer is verified by the caller
(`loopls.context.refactor.finish_rewrite`): whatever the model writes becomes either a
verified edit or a refusal with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pygls.exceptions import JsonRpcException

from loopls.context.refactor import RewriteOffer, Source, build_prompt
from loopls.engine.backends import Backend, BackendError
from loopls.engine.backends.base import Priority, SamplingParams
from loopls.engine.model.stop_strings import cut_at_stop

from .context_features import ContextHost
from .model_host import ModelUnavailable, guard_prompt

MAX_NEW_TOKENS = 512
MIN_CONTEXT_TOKENS = 64  # below this, packed context is not worth its labels
UNTRAINED_HINT = (" — the untrained tiny-random model writes random text; set model.name to loopls-coder-small"
                  " (the default) or a real checkpoint")


@dataclass(frozen=True)
class ModelAnswer:
    text: str | None  # None when there is no answer
    error: str | None = None  # why there is none
    untrained: bool = False


async def model_answer(server: Any, context: ContextHost, uri: str, src: Source, offer: RewriteOffer) -> ModelAnswer:
    """Ask the loaded model for `offer` on the document `src`."""
    models = server.models
    backend = await models.ready()
    if backend is None:
        return ModelAnswer(None, f"the model is not available: {models.error or 'not loaded'}")
    untrained = backend.info.untrained
    instruction = build_prompt(src, offer)
    try:
        ids, params = await _prompt(server, context, uri, src, offer, backend, instruction)
        guard_prompt(backend, ids)
        out = await models.generate(ids, params, Priority.CODE_ACTION)
    except (BackendError, JsonRpcException, ModelUnavailable, OSError, ValueError, RuntimeError) as exc:
        return ModelAnswer(None, f"the model could not refactor this: {exc}", untrained)
    if out.finish_reason == "cancelled":
        return ModelAnswer(None, "the model's request was cancelled", untrained)
    return ModelAnswer(cut_at_stop(backend.tokenizer.decode(out.token_ids), params.stop)[0], None, untrained)


async def _prompt(server: Any, context: ContextHost, uri: str, src: Source, offer: RewriteOffer, backend: Backend,
                  instruction: str) -> tuple[list[int], SamplingParams]:
    budget = min(server.options.completion.context_tokens, context_budget(backend, instruction))
    packed: list[int] = []
    if budget >= MIN_CONTEXT_TOKENS:
        packed = await context.context_ids(uri, src.text, offer.target[0], budget, backend.tokenizer)
    return rewrite_request(backend, instruction, packed)


def context_budget(backend: Backend, instruction: str) -> int:
    """Tokens left for packed context once the instruction and the answer have their room."""
    return backend.context_limit - MAX_NEW_TOKENS - 1 - len(backend.tokenizer.encode(instruction))


def rewrite_request(backend: Backend, instruction: str, context: list[int]) -> tuple[list[int], SamplingParams]:
    """Prompt ids (BOS, the packed context of other files, the instruction) and greedy
    sampling, cut to leave room for the answer; shared by the server and `loopls refactor`."""
    tokenizer = backend.tokenizer
    bos = [tokenizer.special.bos] if tokenizer.special.bos is not None else []
    room = backend.context_limit - MAX_NEW_TOKENS - len(bos)
    ids = context + tokenizer.encode(instruction)
    if len(ids) > room:
        ids = ids[len(ids) - room:]  # keep the instruction's end: the code and where the answer starts
    return bos + ids, SamplingParams(max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=("\n```",))
