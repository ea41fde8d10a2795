"""The `loopls` command line. Positions are 1-based lines and columns, like compilers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from loopls.engine.backends import CPU_WEIGHTS

from ..options import MAX_COMPLETION_TOKENS, ModelOptions
from ..version import __version__
from .args import Parser, bounded_int, device, fail, log_level, parse_host_port, parse_location

SWITCH_INTERVAL_S = 0.001  # the language server's GIL switch interval (see _run_lsp)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="loopls", description="A language server for AI-assisted coding.")
    parser.add_argument("--version", action="version", version=f"loopls {__version__}")
    parser.add_argument("--log-level", default="WARNING", type=log_level, help="Python logging level (to stderr)")
    sub = parser.add_subparsers(dest="command")

    lsp = sub.add_parser("lsp", help="run the language server (the default command)")
    lsp.add_argument("--tcp", metavar="HOST:PORT", type=parse_host_port, help="listen on TCP instead of stdio")
    lsp.add_argument("--model", help="loopls-coder-small (default), tiny-random, a checkpoint folder or a cached hub id "
                     "(overrides editor settings)")

    complete = sub.add_parser("complete", help="one completion at FILE:LINE:COL, as an editor gets it")
    complete.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    complete.add_argument("--model", default=None, help="loopls-coder-small (default), tiny-random, a checkpoint folder or a cached hub id")
    complete.add_argument("--max-tokens", type=bounded_int(1, MAX_COMPLETION_TOKENS), default=None,
                          help=f"tokens to generate (1 to {MAX_COMPLETION_TOKENS})")
    complete.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N")
    complete.add_argument("--cpu-weights", choices=CPU_WEIGHTS, default=ModelOptions().cpu_weights,
                          help="on a CPU: the model's matrices in fp32 or int8 (as the server's model.cpuWeights)")
    complete.add_argument("--json", action="store_true", help="print JSON")

    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    tiny = model_sub.add_parser("create-tiny", help="write a small random checkpoint (Hugging Face layout)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--arch", default="iquestloopcoder", choices=("iquestloopcoder", "iquestcoder", "qwen2", "llama"))
    tiny.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)
    tiny.add_argument("--shards", type=bounded_int(1, 64), default=1, help="number of safetensors shards (with an index)")
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

    from .refactor import add_refactor_parser

    add_refactor_parser(sub)

    demo = sub.add_parser("demo", help="start the server, connect a real LSP client to a sample project, show completions")
    demo.add_argument("project", nargs="?", type=Path, help="a project folder (default: the bundled sample)")
    demo.add_argument("--model", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: a bug is one line too, never a traceback
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        return fail(f"internal error: {type(exc).__name__}: {exc} (--log-level DEBUG shows where)")


def _run(args: argparse.Namespace) -> int:
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
    if command == "refactor":
        from .refactor import run_refactor

        return run_refactor(args)
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


def _run_lsp(tcp: tuple[str, int] | None, model: str | None) -> int:
    from loopls.engine.serving.standby import StandbyProcess

    # The engine process first: its interpreter imports torch and the engine (about two seconds
    # of CPU) on the other core while this one imports the server and answers `initialize`; the
    # model, once the options name it, loads in it (unless it runs elsewhere: then it ends).
    standby = StandbyProcess()
    from ..features import create_server
    from ..transport import run_stdio, run_tcp

    # The event loop shares the GIL with the project, refactor and engine threads: each time it
    # wakes (a message read, a reply written) it waits for a busy worker to let go, up to one
    # switch interval. 1 ms instead of 5 ms: in bench/worst_latency.py's 20,000-line case the
    # worst pull went from 380-517 ms to 69-248 ms and the worst didChange from 68-130 to 41-61 ms.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    server = create_server(model, standby)
    code = run_tcp(server, *tcp) if tcp else run_stdio(server)
    # `exit` means now (LSP): a worker thread still busy (a long index build, a model load)
    # must not keep the process alive, so skip the interpreter's wait for them. That also
    # skips multiprocessing's ending of child processes: the engine process is ended here.
    server.end_process()
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
