"""`python -m training run OUT` (the whole pipeline) and `python -m training snapshot FILE`.

    python -m training run OUT [--tiny] [--seed 0] [--snapshot FILE ...] [--phases short,long,fim]
        [--steps N1,N2,N3,N4] [--init CHECKPOINT] [--seconds S] [--deadline S] [--compile [PHASES]]
        [--fim-lr LR]
    python -m training snapshot FILE [--tiny]

Run from the repository root (the folder holding training/). See docs/default-model.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from .pipeline import describe, run
from .recipe import SMALL, TINY
from .snapshot import write_snapshot
from .trainer import json_logger


def _steps(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _phases(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    if not set(names) <= {"short", "long", "fim"} or not names:
        raise argparse.ArgumentTypeError("phases are short, long and fim, comma-separated")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="corpus -> tokenizer -> samples -> training -> export")
    r.add_argument("out", type=Path, help="checkpoint folder to write")
    r.add_argument("--snapshot", type=Path, action="append", default=[], help="another machine's files (snapshot)")
    r.add_argument("--steps", type=_steps, help="steps of each phase run, comma-separated (default: fit the time)")
    r.add_argument("--phases", type=_phases, default=("short", "long", "fim"), help="default: short,long,fim")
    r.add_argument("--init", type=Path, help="continue this checkpoint folder (its tokenizer and weights)")
    r.add_argument("--seconds", type=float, help="training time budget (default: the recipe's)")
    r.add_argument("--deadline", type=float, help="stop training this many seconds after start, whatever the plan")
    r.add_argument("--device", default="auto")
    r.add_argument("--compile", nargs="?", const=("short", "long", "fim"), type=_phases, default=(),
                   help="torch.compile the training forward of these phases (GPU only; default: all)")
    r.add_argument("--machine", default="gpu", help="label of this machine in the manifest")
    r.add_argument("--optimizer", choices=("adamw", "muon"), help="default: the recipe's (adamw)")
    r.add_argument("--fim-lr", type=float, help="peak learning rate of the completion phase (default: the recipe's)")
    s = sub.add_parser("snapshot", help="this machine's share of the corpus, to carry to the training machine")
    s.add_argument("file", type=Path)
    s.add_argument("--machine", default="cpu")
    for p in (r, s):
        p.add_argument("--tiny", action="store_true", help="toy scale, to check the pipeline on a CPU")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = ap.parse_args(argv)
    recipe = TINY if args.tiny else SMALL
    if args.command == "snapshot":
        files, size = write_snapshot(args.file, args.machine, recipe.package_cap_bytes, recipe.stdlib_cap_bytes,
                                     args.seed, args.workers)
        print(f"{args.file}: {files} files, {size / 1e6:.1f} MB of source, {args.file.stat().st_size / 1e6:.1f} MB")
        return 0
    if args.seconds is not None:
        recipe = dataclasses.replace(recipe, train_seconds=args.seconds)
    if args.compile:
        recipe = dataclasses.replace(recipe, compile=args.compile)
    if args.optimizer is not None:
        recipe = dataclasses.replace(recipe, optimizer=args.optimizer)
    if args.fim_lr is not None:
        recipe = dataclasses.replace(recipe, fim_lr=args.fim_lr)
    start = time.perf_counter()
    deadline = start + args.deadline if args.deadline else None
    run(args.out, recipe, args.seed, args.workers, args.machine, args.snapshot, args.device,
        json_logger(sys.stdout), args.steps, deadline, args.phases, args.init)
    print(describe(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
