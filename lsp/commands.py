"""`loopls complete` and `loopls model create-tiny`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from loopls.engine.loader import CheckpointError

from .completion import UNTRAINED_NOTICE
from .convert import offset_from_cli
from .options import CompletionOptions


def _fail(message: str) -> int:
    print(f"loopls: {message}", file=sys.stderr)
    return 2


def read_source(path) -> str:
    """A source file as text; binary and non-UTF-8 files are refused with a clear error."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise ValueError(f"{path}: binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def run_complete(args: argparse.Namespace) -> int:
    from .engine_host import load_completer

    path, line, col = args.location
    try:
        text = read_source(path)
        offset = offset_from_cli(text, line, col)
    except (OSError, ValueError) as exc:  # PositionError is a ValueError
        return _fail(str(exc))
    try:
        completer = load_completer(args.model, args.device)
    except (CheckpointError, OSError) as exc:
        return _fail(str(exc))
    options = CompletionOptions()
    if args.max_tokens is not None:
        options = dataclasses.replace(options, max_tokens=args.max_tokens)
    try:
        result = completer.complete(text, offset, options)
    except (ValueError, RuntimeError) as exc:
        return _fail(f"completion failed: {exc}")
    lm = completer.lm
    if args.json:
        print(json.dumps({
            "items": [{"insertText": t} for t in result.items],
            "model": {"path": str(lm.path), "modelType": lm.config.model_type, "untrained": lm.untrained},
            "promptTokens": result.prompt_tokens,
            "generatedTokens": len(result.generation.token_ids),
            "finishReason": result.generation.finish_reason,
            "timings": result.generation.timings,
            **({"notice": UNTRAINED_NOTICE} if lm.untrained else {}),
        }, indent=2))
    else:
        if lm.untrained:
            print(f"note: {UNTRAINED_NOTICE}", file=sys.stderr)
        if not result.items:
            print("(no completion)", file=sys.stderr)
        for item in result.items:
            print(item)
    return 0


def run_create_tiny(args: argparse.Namespace) -> int:
    from loopls.engine.tiny import create_tiny

    if args.model_command != "create-tiny":
        raise AssertionError(args.model_command)
    try:
        folder = create_tiny(args.dir, arch=args.arch, seed=args.seed, shards=args.shards)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    print(f"wrote an untrained {args.arch} checkpoint to {folder}")
    return 0
