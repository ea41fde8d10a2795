"""The `loopls` command line. Positions are 1-based lines and columns, like compilers."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..version import __version__
from .args import parse_location


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopls", description="A language server for AI-assisted coding.")
    parser.add_argument("--version", action="version", version=f"loopls {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (to stderr)")
    sub = parser.add_subparsers(dest="command")

    lsp = sub.add_parser("lsp", help="run the language server (the default command)")
    lsp.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    lsp.add_argument("--model", help="loopls-coder-small (default), tiny-random, a checkpoint folder or a cached hub id "
                     "(overrides editor settings)")

    complete = sub.add_parser("complete", help="one completion at FILE:LINE:COL, as an editor gets it")
    complete.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    complete.add_argument("--model", default=None, help="loopls-coder-small (default), tiny-random, a checkpoint folder or a cached hub id")
    complete.add_argument("--max-tokens", type=int, default=None)
    complete.add_argument("--device", default="auto")
    complete.add_argument("--json", action="store_true", help="print JSON")

    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser("create-tiny", help="write a small random checkpoint (Hugging Face layout)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--arch", default="iquestloopcoder", choices=("iquestloopcoder", "iquestcoder", "qwen2", "llama"))
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--shards", type=int, default=1, help="number of safetensors shards (with an index)")
    tiny.add_argument("--size", default="tiny", choices=("tiny", "small"),
                      help="tiny: head_dim 16, fastest; small: head_dim 64, a shape vLLM's CPU attention runs")

    doctor = sub.add_parser("doctor", help="what is installed, which device and model, what is missing")
    doctor.add_argument("--url", help="also check an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")

    from .serve import add_serve_parser

    add_serve_parser(sub)

    from .check import add_check_parser

    add_check_parser(sub)

    from .context import add_parsers as add_context_parsers

    add_context_parsers(sub)

    demo = sub.add_parser("demo", help="start the server, connect a real LSP client to a sample project, show completions")
    demo.add_argument("project", nargs="?", type=Path, help="a project folder (default: the bundled sample)")
    demo.add_argument("--model", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    command = args.command or "lsp"
    if command == "lsp":
        return _run_lsp(getattr(args, "tcp", None), getattr(args, "model", None))
    if command == "complete":
        from .commands import run_complete

        return run_complete(args)
    if command == "model":
        from .commands import run_create_tiny

        return run_create_tiny(args)
    if command in ("index", "context"):
        from .context import run_context, run_index

        return run_index(args) if command == "index" else run_context(args)
    if command == "check":
        from .check import run_check

        return run_check(args)
    if command == "doctor":
        from .doctor import run_doctor

        return run_doctor(args.url)
    if command == "serve":
        from .serve import run_serve

        return run_serve(args)
    if command == "demo":
        from .demo import run_demo

        return run_demo(args.project, args.model)
    raise AssertionError(command)


def _run_lsp(tcp: str | None, model: str | None) -> int:
    from ..features import create_server

    server = create_server(model)
    if tcp:
        host, _, port = tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
