"""`loopls index PATH` and `loopls context FILE:LINE:COL`: the context engine on the command
line. Both reuse the persisted index in the loopls cache directory, so repeated calls only
parse what changed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from loopls.context.assemble import ContextEngine
from loopls.context.explain import explain, explain_text
from loopls.context.project import IndexSummary, Project
from loopls.context.workspace import WorkspaceError

from ..positions import offset_from_cli
from .args import fail, parse_location, read_source


def workspace_root_for(path: Path) -> Path:
    """The git work tree holding `path`, else the current folder when it holds `path`, else
    the file's own folder."""
    from loopls.context.history import open_repo

    path = path.resolve()
    repo = open_repo(path.parent)
    if repo is not None and repo.working_tree_dir:
        return Path(repo.working_tree_dir).resolve()
    cwd = Path.cwd().resolve()
    return cwd if path.is_relative_to(cwd) else path.parent


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream, self.width, self._last = stream, width, 0.0

    def __call__(self, done: int, total: int, path: str) -> None:
        now = time.monotonic()
        if done != total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\rindexing [{bar}] {done}/{total} {path[-40:]:<40}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _cache_dir() -> Path:
    from loopls.engine.model.models import cache_dir

    return cache_dir()


def format_summary(root: Path, s: IndexSummary) -> str:
    langs = ", ".join(f"{k} {v}" for k, v in sorted(s.languages.items(), key=lambda kv: (-kv[1], kv[0])))
    rate = s.bytes / s.seconds / 1e6 if s.seconds > 0 else 0.0
    return (f"{root}: {s.files} files ({langs}), {s.definitions} definitions, {s.bytes / 1e6:.2f} MB\n"
            f"parsed {s.parsed}, from cache {s.from_cache}, skipped {s.skipped} "
            f"(binary, generated, over-size or unreadable) in {s.seconds:.2f} s ({rate:.1f} MB/s)"
            + ("" if s.persistent else "\nwarning: the index cache could not be opened; nothing was saved"))


def run_index(args: argparse.Namespace) -> int:
    try:
        index = Project(args.path, _cache_dir())
    except WorkspaceError as exc:
        return fail(str(exc))
    summary = index.build(None if args.quiet else _ProgressBar())
    index.close()
    print(format_summary(index.root, summary))
    return 0


def load_tokenizer(model: str | None):
    from loopls.engine.model.checkpoint import CheckpointError, resolve_checkpoint
    from loopls.engine.model.models import resolve_model_name
    from loopls.engine.model.tokenizer import Tokenizer, TokenizerError

    try:
        return Tokenizer.from_folder(resolve_checkpoint(resolve_model_name(model)))
    except (CheckpointError, TokenizerError, OSError) as exc:
        raise ValueError(f"cannot load the tokenizer of model {model or 'loopls-coder-small'}: {exc}") from None


def run_context(args: argparse.Namespace) -> int:
    path, line, col = args.location
    try:
        text = read_source(path)
        offset = offset_from_cli(text, line, col)
        root = Path(args.root) if args.root else workspace_root_for(path)
        index = Project(root, _cache_dir())
        rel = index.workspace.relative(path)
        tokenizer = load_tokenizer(args.model)
    except (OSError, ValueError) as exc:  # PositionError and WorkspaceError are ValueErrors
        return fail(str(exc))
    if not 64 <= args.budget <= 131072:
        return fail(f"--budget {args.budget} is out of range: too small or too large (64 to 131072 tokens)")
    index.build()
    engine = ContextEngine(index, tokenizer, tokenizer.special, history=not args.no_history)
    try:
        packed = engine.assemble(rel, text, offset, args.budget)
    except ValueError as exc:
        return fail(str(exc))
    finally:
        index.close()
    print(json.dumps(explain(packed), indent=2) if args.json else explain_text(packed))
    return 0


def add_parsers(sub) -> None:
    """The `index` and `context` subcommands (called from the CLI's build_parser)."""
    index = sub.add_parser("index", help="build or refresh the project index (progress bar, summary)")
    index.add_argument("path", type=Path, nargs="?", default=Path("."))
    index.add_argument("--quiet", action="store_true", help="no progress bar")

    context = sub.add_parser("context", help="the packed context for FILE:LINE:COL and why each snippet is in it")
    context.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    context.add_argument("--budget", type=int, default=2048, help="prompt budget in model tokens (default 2048)")
    context.add_argument("--json", action="store_true", help="print JSON")
    context.add_argument("--model", default=None, help="whose tokenizer counts tokens (default: loopls-coder-small)")
    context.add_argument("--root", default=None, help="workspace root (default: the file's git work tree)")
    context.add_argument("--no-history", action="store_true", help="leave git history out")
