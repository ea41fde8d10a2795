"""The model-driven kinds of `loopls refactor` (docstring, type hints, simplify): the offer's
prompt goes to the model through the server's model host, and its answer is verified like the
code action's. Kept apart so that the syntax-only kinds never load the engine."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

from loopls.context.languages import Languages
from loopls.context.refactor import Refactoring, Source, build_prompt, finish_rewrite, rewrite_offers
from loopls.engine.backends import BackendConfig
from loopls.engine.backends.base import Priority
from loopls.engine.model.stop_strings import cut_at_stop

from ..model_host import ModelHost, guard_prompt
from ..rewrites import UNTRAINED_HINT, rewrite_request
from .args import fail


def model_refactor(args: argparse.Namespace, text: str, language: str, languages: Languages, kind: str,
                    start: int, end: int) -> Refactoring | int | None:
    src = Source(text, language, languages)
    offer = next((o for o in rewrite_offers(src, start, end) if o.kind == kind), None)
    if offer is None:
        return None
    answer = asyncio.run(_answer(args, build_prompt(src, offer)))
    if isinstance(answer, int):
        return answer
    text_out, untrained = answer
    result = finish_rewrite(src, offer, text_out, languages)
    if result.reason is not None and untrained:
        result = result.refused(result.reason + UNTRAINED_HINT)
    return result


async def _answer(args: argparse.Namespace, instruction: str) -> tuple[str, bool] | int:
    """The model's answer to `instruction` (and whether the model is untrained), through the
    server's model host: the same prompt check and accounting; an exit status on failure."""
    with ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare") as thread:
        models = ModelHost(thread)
        models.configure(BackendConfig(model=args.model, device=args.device, context_tokens=4096))
        backend = await models.ready()
        if backend is None:
            return fail(str(models.error))
        try:
            ids, params = rewrite_request(backend, instruction, [])
            guard_prompt(backend, ids)
            out = await models.generate(ids, params, Priority.CODE_ACTION)
        except (ValueError, RuntimeError) as exc:  # PromptRefused, EngineFailed, an oversized prompt
            return fail(f"the model could not refactor this: {exc}")
        finally:
            models.shutdown()
    return cut_at_stop(backend.tokenizer.decode(out.token_ids), params.stop)[0], backend.info.untrained
