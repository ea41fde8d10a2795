"""`loopls refactor FILE:LINE:COL KIND`: one refactor at a position (or a selection up to
`--end`), printed as a unified diff — the same refactors, verification and model prompt as
the language server's code actions (the server also packs project context into the model's
prompt; the command line gives the model the quoted code alone)."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loopls.context.languages import Languages, language_for_path
from loopls.context.refactor import (Refactoring, Source, apply_edits, build_prompt, finish_rewrite,
                                     first_party_modules, refactorings, rewrite_offers)
from loopls.engine.backends import BackendConfig
from loopls.engine.backends.base import Priority
from loopls.engine.model.generate import cut_at_stop

from ..positions import offset_from_cli
from ..model_host import ModelHost, guard_prompt
from ..rewrites import UNTRAINED_HINT, rewrite_request
from .args import parse_location
from .commands import read_source

KINDS = {
    "extract-variable": "refactor.extract.variable",
    "extract-function": "refactor.extract.function",
    "inline-variable": "refactor.inline.variable",
    "organize-imports": "source.organizeImports",
    "to-format": "refactor.rewrite.format",
    "to-fstring": "refactor.rewrite.fstring",
    "docstring": "refactor.rewrite.docstring",
    "type-hints": "refactor.rewrite.typeHints",
    "simplify": "refactor.rewrite.simplify",
}
MODEL_KINDS = {"refactor.rewrite.docstring", "refactor.rewrite.typeHints", "refactor.rewrite.simplify"}


def add_refactor_parser(sub) -> None:
    p = sub.add_parser("refactor", help="one refactor at FILE:LINE:COL, printed as a diff")
    p.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    p.add_argument("kind", choices=sorted(KINDS), help="which refactor")
    p.add_argument("--end", metavar="LINE:COL", help="end of the selection (1-based; default: the position itself)")
    p.add_argument("--write", action="store_true", help="also write the result to the file")
    p.add_argument("--model", default=None, help="for the model-driven kinds: checkpoint folder, cached hub id, or 'tiny'")
    p.add_argument("--device", default="auto")


def _fail(message: str, code: int = 2) -> int:
    print(f"loopls: {message}", file=sys.stderr)
    return code


def run_refactor(args: argparse.Namespace) -> int:
    path, line, col = args.location
    kind = KINDS[args.kind]
    try:
        text = read_source(path)
        start = offset_from_cli(text, line, col)
        end = start
        if args.end:
            end_line, _, end_col = args.end.partition(":")
            end = offset_from_cli(text, int(end_line), int(end_col))
    except (OSError, ValueError) as exc:  # PositionError is a ValueError
        return _fail(str(exc))
    if end < start:
        return _fail("--end is before the position")
    language = language_for_path(path)
    if language is None:
        return _fail(f"{path}: no grammar for this kind of file")
    languages = Languages()
    if kind in MODEL_KINDS:
        result = _model_refactor(args, text, language, languages, kind, start, end)
    else:
        found = refactorings(text, str(path), start, end, languages, [kind], _first_party(path))
        result = found[0] if found else None
    if isinstance(result, int):
        return result
    if result is None:
        return _fail(f"no {args.kind} refactor at {path}:{line}:{col}", 1)
    if not result.offered:
        return _fail(f"{result.title}: no edit offered: {result.reason}", 1)
    new = apply_edits(text, result.edits)
    before, after = (str(path), str(path)) if Path(path).is_absolute() else (f"a/{path}", f"b/{path}")
    sys.stdout.writelines(difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                               before, after))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.write:
        Path(path).write_text(new, encoding="utf-8")
    return 0


def _first_party(path: Path) -> frozenset[str]:
    from .context import workspace_root_for

    return first_party_modules(workspace_root_for(path))


def _model_refactor(args: argparse.Namespace, text: str, language: str, languages: Languages, kind: str,
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
            return _fail(str(models.error))
        try:
            ids, params = rewrite_request(backend, instruction, [])
            guard_prompt(backend, ids)
            out = await models.generate(ids, params, Priority.CODE_ACTION)
        except (ValueError, RuntimeError) as exc:  # PromptRefused, EngineFailed, an oversized prompt
            return _fail(f"the model could not refactor this: {exc}")
        finally:
            models.shutdown()
    return cut_at_stop(backend.tokenizer.decode(out.token_ids), params.stop)[0], backend.info.untrained
