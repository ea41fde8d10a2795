"""`loopls complete` and `loopls model create-tiny`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from loopls.engine.backends import Backend, BackendConfig, BackendError, load_backend
from loopls.engine.backends.base import RequestOutput, SamplingParams

from ..completion import UNTRAINED_NOTICE, Completer
from ..convert import offset_from_cli
from ..options import CompletionOptions
from .args import fail, os_error, read_source


def run_complete(args: argparse.Namespace) -> int:
    path, line, col = args.location
    try:
        text = read_source(path)
        offset = offset_from_cli(text, line, col)
    except (OSError, ValueError) as exc:  # PositionError is a ValueError
        return fail(str(exc))
    options = CompletionOptions()
    if args.max_tokens is not None:
        options = dataclasses.replace(options, max_tokens=args.max_tokens)
    try:
        backend = load_backend(BackendConfig(model=args.model, device=args.device, context_tokens=options.context_tokens))
    except BackendError as exc:
        return fail(str(exc))
    try:
        completer = Completer(backend)
        prepared = completer.prepare(text, offset, options)
        out = asyncio.run(_generate(backend, prepared.ids, prepared.params))
    except (ValueError, RuntimeError) as exc:
        return fail(f"completion failed: {exc}")
    finally:
        backend.shutdown()
    if out.finish_reason == "error":
        return fail(f"completion failed: {out.error}")
    items = completer.finish(out.token_ids, prepared.params, text, offset, options)
    info = backend.info
    if args.json:
        print(json.dumps({
            "items": [{"insertText": t} for t in items],
            "model": {"path": info.path, "modelType": info.model_type, "untrained": info.untrained,
                      "backend": info.backend},
            "promptTokens": len(prepared.ids),
            "generatedTokens": len(out.token_ids),
            "finishReason": out.finish_reason,
            "timings": out.metrics,
            **({"notice": UNTRAINED_NOTICE} if info.untrained else {}),
        }, indent=2))
    else:
        if info.untrained:
            print(f"note: {UNTRAINED_NOTICE}", file=sys.stderr)
        if not items:
            print("(no completion)", file=sys.stderr)
        for item in items:
            print(item)
    return 0


async def _generate(backend: Backend, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
    return await backend.submit(prompt_ids, params).result()


def run_create_tiny(args: argparse.Namespace) -> int:
    from loopls.engine.model.tiny import create_tiny

    if args.model_command != "create-tiny":
        raise AssertionError(args.model_command)
    try:
        folder = create_tiny(args.dir, arch=args.arch, seed=args.seed, shards=args.shards, size=args.size)
    except OSError as exc:
        return fail(os_error(exc))
    except ValueError as exc:
        return fail(str(exc))
    print(f"wrote an untrained {args.size} {args.arch} checkpoint to {folder}")
    return 0
