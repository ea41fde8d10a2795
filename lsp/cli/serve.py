"""`loopls serve`: the OpenAI-compatible engine server."""

from __future__ import annotations

import argparse
import os
import sys

from .args import bounded_int, device, fail


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (anything but loopback needs --api-key)")
    p.add_argument("--port", type=bounded_int(0, 65535), default=8000)
    p.add_argument("--model", default=None, help="checkpoint folder, cached hub id, 'tiny-random', or 'loopls-coder-small' (default)")
    p.add_argument("--served-model-name", default=None, help="the model id clients send (default: --model)")
    p.add_argument("--api-key", default=os.environ.get("LOOPLS_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $LOOPLS_API_KEY)")
    p.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--tensor-parallel-size", type=bounded_int(1, 64), default=1,
                   help="GPUs the model is split over, from --device's GPU on (one worker process each)")
    p.add_argument("--context-tokens", type=bounded_int(64, 131072), default=8192,
                   help="typical prompt length; sizes the KV cache on CPU")
    p.add_argument("--max-body-bytes", type=bounded_int(1024, 1 << 30), default=4 << 20, help="larger request bodies are answered 413")
    p.add_argument("--max-prompt-tokens", type=bounded_int(1, 1 << 24), default=None,
                   help="longer prompts are answered 400 (default: the model's context limit)")
    p.add_argument("--max-concurrent", type=bounded_int(1, 4096), default=64,
                   help="requests generating at once; more are answered 429")


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: the HTTP stack and torch are not needed to build the parser.
    from loopls.engine.backends import BackendError
    from loopls.engine.server import ServeError, ServeOptions, ServerLimits, serve

    try:
        options = ServeOptions(
            host=args.host, port=args.port, model=args.model, served_name=args.served_model_name,
            api_key=args.api_key or None, device=args.device, context_tokens=args.context_tokens,
            tensor_parallel_size=args.tensor_parallel_size,
            limits=ServerLimits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                                max_concurrent=args.max_concurrent),
            log_level=args.log_level.lower(),
        )
        serve(options, announce=lambda line: print(f"loopls: {line}", file=sys.stderr, flush=True))
    except (ServeError, BackendError, ValueError) as exc:
        return fail(str(exc), "loopls serve")
    return 0
