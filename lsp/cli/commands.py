"""`loopls complete` and `loopls model create-tiny`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loopls.context.assemble import ContextEngine
from loopls.context.history import open_repo
from loopls.context.languages import language_for_path
from loopls.context.project import Project
from loopls.engine.backends import BackendConfig
from loopls.engine.model.models import cache_dir

from ..options import CompletionOptions
from ..positions import offset_from_cli
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
    return asyncio.run(_complete(args, path, text, offset, options))


async def _complete(args: argparse.Namespace, path: Path, text: str, offset: int, options: CompletionOptions) -> int:
    """The server's completion service, run once: the same prompt (with the project's context
    when the file is in a git work tree), the same post-processing and secret filter."""
    # The service and the model host load the engine (torch): only once the file and the
    # position have been checked, so a mistyped path is reported at once.
    from ..completion.service import CompletionRequest, CompletionService
    from ..model_host import UNTRAINED_NOTICE, EngineFailed, ModelHost

    with ThreadPoolExecutor(1, thread_name_prefix="loopls-prepare") as thread:
        models = ModelHost(thread)
        models.configure(BackendConfig(model=args.model, device=args.device,
                                       context_tokens=options.context_tokens, cpu_weights=args.cpu_weights))
        backend = await models.ready()
        if backend is None:
            return fail(str(models.error))
        try:
            project = ProjectContext.for_file(path, backend.tokenizer)
            service = CompletionService(models, thread, lambda: options, context=project.provide if project else None,
                                        label=lambda p: Path(p).name if p else None, debounce=False)
            request = CompletionRequest(path.resolve().as_uri(), None, str(path), language_for_path(path), text,
                                        offset, invoked=False)
            result = await service.complete(request)
        except EngineFailed as exc:
            return fail(f"completion failed: {exc}")
        finally:
            models.shutdown()
    items = result.suggestions if result else []
    info = backend.info
    if args.json:
        print(json.dumps({
            "items": [{"insertText": s.text, "replace": s.replace} for s in items],
            "model": {"path": info.path, "modelType": info.model_type, "untrained": info.untrained,
                      "backend": info.backend},
            # Without a suggestion, why not (the service's null reason: "empty", "no prompt", …)
            # and the prompt size when a prompt was built; never a field that is just null.
            **({"promptTokens": result.prompt_tokens, "contextFiles": result.context_files} if result else
               {"noCompletion": service.stats.last_null or "empty",
                **({"promptTokens": service.stats.last_engine["prompt_tokens"]}
                   if service.stats.last_engine.get("prompt_tokens") is not None else {})}),
            "generatedTokens": models.stats.last_generated_tokens,
            **({"notice": UNTRAINED_NOTICE} if info.untrained else {}),
        }, indent=2))
    else:
        if info.untrained:
            print(f"note: {UNTRAINED_NOTICE}", file=sys.stderr)
        if not items:
            print("(no completion)", file=sys.stderr)
        for item in items:
            print(item.text)
    return 0


class ProjectContext:
    """The context engine over the git work tree holding a file (indexed like `loopls
    context`), as the completion service's context provider."""

    def __init__(self, engine: ContextEngine, rel: str) -> None:
        self.engine, self.rel = engine, rel

    @classmethod
    def for_file(cls, path: Path, tokenizer) -> ProjectContext | None:
        """None when the file is in no git work tree (the buffer alone is the prompt)."""
        repo = open_repo(path.resolve().parent)
        if repo is None or not repo.working_tree_dir:
            return None
        try:
            project = Project(Path(repo.working_tree_dir), cache_dir())
            rel = project.workspace.relative(path)
            project.build()
        except (OSError, ValueError):  # WorkspaceError is a ValueError: an ignored file, say
            return None
        return cls(ContextEngine(project, tokenizer, tokenizer.special), rel)

    def provide(self, tokenizer, uri: str, version: int | None, text: str, offset: int, budget: int,
                layout: str | None = None):
        return self.engine.assemble(self.rel, text, offset, budget, layout)


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
