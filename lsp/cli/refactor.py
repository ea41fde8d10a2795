"""`loopls refactor FILE:LINE:COL KIND`: one refactor at a position (or a selection up to
`--end`), printed as a unified diff — the same refactors, verification and model prompt as
the language server's code actions (the server also packs project context into the model's
prompt; the command line gives the model the quoted code alone)."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from loopls.context.languages import Languages, language_for_path
from loopls.context.refactor import apply_edits, first_party_modules, refactorings

from ..positions import offset_from_cli
from .args import fail, parse_location, read_source


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
        return fail(str(exc))
    if end < start:
        return fail("--end is before the position")
    language = language_for_path(path)
    if language is None:
        return fail(f"{path}: no grammar for this kind of file")
    languages = Languages()
    if kind in MODEL_KINDS:
        from .refactor_model import model_refactor  # loads the engine (torch) only for these kinds

        result = model_refactor(args, text, language, languages, kind, start, end)
    else:
        found = refactorings(text, str(path), start, end, languages, [kind], _first_party(path))
        result = found[0] if found else None
    if isinstance(result, int):
        return result
    if result is None:
        return fail(f"no {args.kind} refactor at {path}:{line}:{col}", code=1)
    if not result.offered:
        return fail(f"{result.title}: no edit offered: {result.reason}", code=1)
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
