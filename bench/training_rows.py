"""How fast the training row builder makes rows, per phase, in one process (CPU time).

    python bench/training_rows.py SNAPSHOT [--rows 600] [--fim-rows 60] [--seed 0] [--repeat 2]

Run from the repository root (the folder holding training/). SNAPSHOT is a corpus snapshot
(`python -m training snapshot FILE`); its files, capped as the recipe caps them, are the
corpus; the tokenizer is the shipped model's. Rows are the first N of each phase for the seed,
built `--repeat` times in one process (the later passes find the builder's caches warm, as a
long-running worker does for the files it has drawn before). A row's data depends only on
(seed, phase, index), so the digest printed beside the times shows whether two versions of
training/ build the same rows. On the GPU machine, 15 such processes feed the training step.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from loopls.engine.model.models import default_model_dir  # noqa: E402
from loopls.engine.model.tokenizer import Tokenizer  # noqa: E402
from training.corpus import gather  # noqa: E402
from training.recipe import SMALL  # noqa: E402
from training.samples import FIM_ONLY, SampleBuilder  # noqa: E402
from training.snapshot import read_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshot", type=Path)
    ap.add_argument("--rows", type=int, default=600, help="rows of the short phase (2K)")
    ap.add_argument("--fim-rows", type=int, default=60, help="rows of the completion phase (2K)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        dists, _ = read_snapshot(args.snapshot, Path(scratch))
        files = [f for got, _, _ in gather(dists, SMALL.package_cap_bytes, SMALL.stdlib_cap_bytes, args.seed, 1)
                 for f in got]
    print(f"corpus: {len(files)} files, {sum(len(f.text) for f in files) / 1e6:.1f} MB "
          f"({time.perf_counter() - t:.0f} s)")
    builder = SampleBuilder(files, Tokenizer.from_folder(default_model_dir()), seed=args.seed)
    phases = [("short", args.rows, lambda i: builder.row(i, SMALL.short_len, SMALL.short_budgets, "short")),
              ("fim", args.fim_rows, lambda i: builder.row(i, SMALL.fim_len, SMALL.fim_budgets, "fim", FIM_ONLY, True))]
    print("\n| pass | phase | rows | ms per row (CPU) | rows digest |\n|---|---|---|---|---|")
    for p in range(args.repeat):
        for name, count, make in phases:
            digest = hashlib.sha256()
            t = time.process_time()
            for i in range(count):
                digest.update(repr(make(i)).encode())
            ms = 1000 * (time.process_time() - t) / max(count, 1)
            print(f"| {p + 1} | {name} | {count} | {ms:.1f} | {digest.hexdigest()[:12]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
