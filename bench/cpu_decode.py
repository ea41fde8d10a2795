"""The serving core's decode step on the CPU, per token, and where its time goes.

    python bench/cpu_decode.py [--before COMMIT|PATH] [--rounds 3] [--transposed] [--int8] [--model NAME]
                               [--prompt 1000] [--steps 60] [--block-sizes 16,8,4] [--tail 6] [--profile]
    python bench/cpu_decode.py --first-token-sizes 16,8,4,2 [--int8] [--rounds 3] [--prompt 2000] [--tail 6]

Loads the model (fp32, one torch thread: as the language server's engine runs it) and drives
the serving core directly: a ~1K-token prompt cut from loopls' own `context/*.py`, prefilled,
then plain decode steps (no prompt-lookup drafts, so every step is one token per sequence)
for 1 sequence and for 3 sequences over the same prompt (what best-of-3 decodes). Rows: ms
per step, CPU ms per step (the thread's time, which moves much less than the wall time on a
shared machine), and whether the greedy tokens equal the first tree's.

A first-token row (sequences "first token") does what the language server does for a
keystroke: a prefill-only warm-up of the context (max_tokens 0), then a request of that
context plus a short new tail (`--tail` tokens, cut from another file), timed from its
submission to its first token. The prefix cache serves the context's full blocks only, so the
request computes the tail and the context's last, partly filled block: the row is the median
over contexts of 16 lengths (the prompt's length minus 0, 3, ..., 45 tokens: the partial block
takes every size), and says how many tokens the request computed (median).

`--block-sizes` gives the KV block size of the rows, one set of rows per size (default: the
size each tree's language server uses on a CPU).

`--first-token-sizes 16,8,4` compares block sizes for the first token alone, in one process
over this tree (int8 with `--int8`): one engine per size, the same keystrokes taking turns
between them (`--rounds` contexts of 16 lengths each, cut at other places of the sources), so
the machine's load falls on every size alike; the rows give the CPU time to the first token
(median, mean, quartiles), the tokens computed, and the CPU time of the 3 decode steps after it.

`--before` runs the same measurement on another tree (a commit, checked out in a temporary
git worktree, or a folder holding a loopls source tree) in the same run: the trees take
turns, `--rounds` times each (a fresh process each time), and a row is the median of the
rounds' medians, with the range of the load average over its rounds.

`--transposed` adds rows of this tree with every linear layer and the LM head computed as
`x @ W.T` over transposed, contiguous copies of the weights (`[in, out]`): another BLAS path,
faster here, which rounds differently; the rows say whether the greedy tokens stay the same.

`--int8` adds rows with int8 weights (`BackendConfig.cpu_weights` "int8": every linear layer
and the LM head quantized per output channel as the checkpoint loads, engine/model/int8.py;
what the language server runs), for `--before`'s tree too; their greedy tokens are not fp32's
(other numerics): they are compared with the first int8 tree's.

`--profile` adds the breakdown of one sequence's step (every tree, in the last round):
torch.profiler's self CPU time of the heaviest ops, and a floor: the step's matrix-vector products alone
(every linear layer of both Loop passes and the LM head over the model's own weights, one
token, then three rows as best-of-3's step has), which stream all fp32 weights from memory
each step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp_latency import source_tree  # noqa: E402 - the benches' one way to check out a tree


def _use_tree(tree: str) -> None:
    """Import loopls from `tree` (a folder holding a `loopls` package), not the editable install."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
    sys.path.insert(0, tree)


def measure(prompt_tokens: int, steps: int, model_name: str | None, profile: bool, variant: str,
            block_size: int, tail: int) -> dict:
    """Run in a worker process over one tree: per batch, the step times and the tokens; then
    the first token of a request over a warmed context."""
    import torch

    from loopls.engine.model.loader import load_checkpoint
    from loopls.engine.model.models import resolve_model_name
    from loopls.engine.model.sampling_params import SamplingParams
    from loopls.engine.serving.core import EngineCore
    from loopls.engine.serving.scheduler import SchedulerConfig

    torch.set_num_threads(1)
    extra = {"int8_weights": True} if variant == "int8" else {}  # the option only this tree has
    lm = load_checkpoint(resolve_model_name(model_name), device="cpu", dtype="float32", **extra)
    head = _transpose(lm.model) if variant == "transposed" else None
    text = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py")))
    prompt = lm.tokenizer.encode(text)[:prompt_tokens]
    out: dict = {"model": str(lm.path), "rows": [], "block_size": block_size}
    config = SchedulerConfig(num_blocks=-(-8192 // block_size), block_size=block_size, num_speculative_tokens=0)
    for batch in (1, 3):
        core = EngineCore(lm.model, config, eos_ids=())
        if head is not None:
            core.runner.executor.gemm = head  # the LM head's product (vocab_parallel.shard_logits)
        params = SamplingParams(max_tokens=steps + 40, min_tokens=steps + 40)
        for i in range(batch):
            core.add(f"r{i}", prompt, params)
        tokens: dict[str, list[int]] = {}

        def step() -> None:
            for event in core.step():
                tokens.setdefault(event.seq.request_id, []).extend(event.new_tokens)

        while not tokens or any(len(tokens.get(f"r{i}", ())) < 2 for i in range(batch)):
            step()  # the prefill, and the first decode step
        wall, cpu = [], []
        for _ in range(steps):
            w, c = time.perf_counter(), time.thread_time()
            step()
            wall.append(time.perf_counter() - w)
            cpu.append(time.thread_time() - c)
        digest = hashlib.sha1(json.dumps([tokens[f"r{i}"] for i in range(batch)]).encode()).hexdigest()[:10]
        out["rows"].append({
            "batch": batch, "wall_ms": 1000 * statistics.median(wall), "cpu_ms": 1000 * statistics.median(cpu),
            "tokens": digest, "load": os.getloadavg()[0],
        })
        if profile and batch == 1:
            out["profile"] = _profile(core, step, lm.model, floor=not variant)
    other = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "lsp").glob("*.py")))
    out["rows"].append(_first_token(EngineCore(lm.model, config, eos_ids=()), prompt,
                                    lm.tokenizer.encode(other)[:tail]))
    return out


def _first_token(core, prompt: list[int], tail: list[int]) -> dict:
    """A keystroke's request: warm `context` (prefill-only), then time `context + tail` to its
    first token, over contexts of 16 lengths (shortest first: each warm-up extends the last)."""
    got = _keystrokes({0: core}, [prompt], tail, 1)[0]
    return {"batch": "first token", "wall_ms": statistics.median(got["wall"]), "cpu_ms": statistics.median(got["cpu"]),
            "computed": statistics.median(got["computed"]),
            "tokens": hashlib.sha1(json.dumps(got["tokens"]).encode()).hexdigest()[:10], "load": os.getloadavg()[0]}


def _keystrokes(cores: dict, prompts: list[list[int]], tail: list[int], max_tokens: int) -> dict:
    """Per core: warm each context of each prompt (its last 0, 3, ..., 45 tokens cut), then time a
    request of the context + `tail` to its first token (ms) and its decode steps after it (CPU
    ms); the cores take turns keystroke by keystroke."""
    from loopls.engine.model.sampler import SamplingParams

    out = {key: {"wall": [], "cpu": [], "computed": [], "tokens": [], "steps": []} for key in cores}
    for p, prompt in enumerate(prompts):
        for i, cut in enumerate(range(45, -1, -3)):
            context = prompt[:len(prompt) - cut]
            for key, core in cores.items():
                got = out[key]
                core.add(f"warm{p}.{i}", context, SamplingParams(max_tokens=0))
                while core.has_work:
                    core.step()
                w, c = time.perf_counter(), time.thread_time()
                seq = core.add(f"key{p}.{i}", context + tail,
                               SamplingParams(max_tokens=max_tokens, min_tokens=max_tokens, temperature=0.0))
                new: list[int] = []
                while not new:
                    for event in core.step():
                        new.extend(event.new_tokens)
                got["wall"].append(1000 * (time.perf_counter() - w))
                got["cpu"].append(1000 * (time.thread_time() - c))
                got["computed"].append(len(context) + len(tail) - seq.metrics.cached_tokens)
                got["tokens"].append(new[0])
                while core.has_work:
                    c = time.thread_time()
                    core.step()
                    got["steps"].append(1000 * (time.thread_time() - c))
    return out


def compare_sizes(sizes: list[int], prompt_tokens: int, model_name: str | None, int8: bool, tail: int,
                  rounds: int) -> dict:
    """`--first-token-sizes` in a worker process over one tree: one engine per block size."""
    import torch

    from loopls.engine.model.loader import load_checkpoint
    from loopls.engine.model.models import resolve_model_name
    from loopls.engine.serving.core import EngineCore
    from loopls.engine.serving.scheduler import SchedulerConfig

    torch.set_num_threads(1)
    lm = load_checkpoint(resolve_model_name(model_name), device="cpu", dtype="float32",
                         **({"int8_weights": True} if int8 else {}))
    text = lm.tokenizer.encode("".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "context").glob("*.py"))))
    other = lm.tokenizer.encode("".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "lsp").glob("*.py"))))
    cores = {bs: EngineCore(lm.model, SchedulerConfig(num_blocks=-(-65536 // bs), block_size=bs,
                                                      num_speculative_tokens=0), eos_ids=()) for bs in sizes}
    prompts = [text[r * 37:r * 37 + prompt_tokens] for r in range(rounds)]  # no prompt shares another's start
    got = _keystrokes(cores, prompts, other[:tail], 4)
    return {str(bs): {"cpu": got[bs]["cpu"], "computed": got[bs]["computed"], "steps": got[bs]["steps"]}
            for bs in sizes}


def _transpose(model):
    """Every linear layer of the model as `x @ W.T` over a contiguous copy of `W.T`, and an
    object the executor takes as its `gemm` for the LM head, likewise."""
    import torch
    from torch import nn

    class Transposed(nn.Module):
        def __init__(self, weight: torch.Tensor) -> None:
            super().__init__()
            self.weight_t = weight.detach().t().contiguous()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight_t

    for parent in list(model.model.layers.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.bias is None:
                setattr(parent, name, Transposed(child.weight))

    class Head:
        def __init__(self, weight: torch.Tensor) -> None:
            self.weight_t = weight.detach().t().contiguous()

        def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return x @ self.weight_t

    return Head(model.output_weight())


def _profile(core, step, model, floor: bool = True) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    n = 20
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [(e.key, e.self_cpu_time_total / 1000 / n, e.count / n) for e in ops[:8]]
    total = sum(e.self_cpu_time_total for e in ops) / 1000 / n
    if not floor:  # another variant's weights: its op breakdown only
        return {"top": top, "aten_ms": total}
    # The floor: the step's matrix-vector products alone, over the model's weights in the
    # order a decode step reads them (each layer twice for a Loop model, then the LM head).
    layers = model.model.layers
    weights = [p for _ in range(max(model.config.loop_num, 1)) for layer in layers
               for name, p in layer.named_parameters() if p.dim() == 2 and "layernorm" not in name]
    weights.append(model.output_weight())
    # The same products over transposed copies of the weights ([in, out], contiguous): another
    # BLAS path, which rounds differently (the largest difference is printed), so not the
    # engine's; what a layout change could gain.
    transposed = [w.t().contiguous() for w in weights]
    floor, differs = {}, {}
    for rows in (1, 3):  # one sequence's step, and best-of-3's
        xs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
        runs = {"as loaded": lambda: [F.linear(xs[w.shape[1]], w) for w in weights],
                "transposed": lambda: [xs[t.shape[0]] @ t for t in transposed]}
        with torch.inference_mode():
            for layout, run in runs.items():
                times = []
                for _ in range(25):
                    began = time.thread_time()
                    run()
                    times.append(time.thread_time() - began)
                floor[f"{layout}, {rows} row{'s' if rows > 1 else ''}"] = 1000 * statistics.median(times[5:])
            differs[rows] = max((a - b).abs().max().item() for a, b in zip(runs["as loaded"](), runs["transposed"]()))
    megabytes = sum(w.numel() * w.element_size() for w in weights) / 1e6
    return {"top": top, "aten_ms": total, "floor": floor, "differs": differs, "weights_mb": megabytes}


def worker(args: argparse.Namespace) -> None:
    _use_tree(args.tree)
    if args.first_token_sizes:
        sizes = [int(x) for x in args.first_token_sizes.split(",")]
        print(json.dumps(compare_sizes(sizes, args.prompt, args.model, args.variant == "int8", args.tail, args.rounds)))
        return
    block_size = args.block_size or _server_block_size()
    print(json.dumps(measure(args.prompt, args.steps, args.model, args.profile, args.variant, block_size, args.tail)))


def _server_block_size() -> int:
    """The KV block size the tree's language server uses on a CPU."""
    from loopls.engine.backends import native

    return getattr(native, "CPU_BLOCK_SIZE", native.BLOCK_SIZE)


def run_tree(tree: Path, args: argparse.Namespace, profile: bool, variant: str, block_size: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--tree", str(tree), "--prompt",
           str(args.prompt), "--steps", str(args.steps), "--variant", variant, "--block-size", str(block_size),
           "--tail", str(args.tail)]
    cmd += ["--model", args.model] if args.model else []
    cmd += ["--profile"] if profile else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="a commit or a folder with a loopls source tree, measured first")
    ap.add_argument("--model", default=None, help="default: the shipped default model")
    ap.add_argument("--prompt", type=int, default=1000, help="prompt tokens")
    ap.add_argument("--steps", type=int, default=60, help="decode steps timed per row")
    ap.add_argument("--rounds", type=int, default=3, help="turns of each tree (rows: the median)")
    ap.add_argument("--profile", action="store_true", help="where one sequence's step goes (this tree)")
    ap.add_argument("--transposed", action="store_true", help="rows of this tree over transposed weight copies")
    ap.add_argument("--int8", action="store_true", help="rows with int8 weights (cpu_weights int8), every tree")
    ap.add_argument("--block-sizes", default="", help="KV block sizes, comma-separated (default: the server's)")
    ap.add_argument("--tail", type=int, default=6, help="new tokens of the first-token row's request")
    ap.add_argument("--first-token-sizes", default="", help="compare these block sizes' first tokens, in one process")
    ap.add_argument("--block-size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.first_token_sizes:
        first_token_sizes(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trees = []
        worktree = None
        try:
            if args.before:
                tree, label = source_tree(args.before, work)
                worktree = work / "before-worktree" if (work / "before-worktree").exists() else None
                trees.append((f"before ({label})", tree))
            tree, _ = source_tree(str(ROOT), work)
            trees.append(("after (this tree)" if args.before else "this tree", tree))
            variants = [(name, tree, "") for name, tree in trees]
            if args.int8:
                variants = [(f"{name}, int8 weights", tree, "int8") for name, tree in trees] + variants
            if args.transposed:
                variants.append(("this tree, transposed weights", tree, "transposed"))
            sizes = [int(x) for x in args.block_sizes.split(",") if x] or [0]
            cases = [(name, tree, variant, size) for size in sizes for name, tree, variant in variants]
            print(f"# {platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
                  f"{time.strftime('%Y-%m-%d %H:%M %Z')}; fp32 unless a row says int8, one torch thread, "
                  f"prompt {args.prompt} tokens, "
                  f"{args.steps} decode steps per row (medians), no drafts; first token: tail {args.tail} tokens",
                  flush=True)
            print("| tree | block size | sequences | ms / step | CPU ms / step | CPU ms / token | greedy tokens "
                  "| load |")
            print("|---|---|---|---|---|---|---|---|")
            runs: list[list[dict]] = [[] for _ in cases]
            for r in range(args.rounds):
                for i, (_, tree, variant, size) in enumerate(cases):
                    runs[i].append(run_tree(tree, args, args.profile and r == args.rounds - 1, variant, size))
            for i, ((name, _, variant, _), tree_runs) in enumerate(zip(cases, runs)):
                # greedy tokens are compared with the first case of the same weights and block size
                ref = next(j for j, c in enumerate(cases) if c[2] == variant
                           and runs[j][0]["block_size"] == tree_runs[0]["block_size"])
                for j, row in enumerate(tree_runs[0]["rows"]):
                    rows = [run["rows"][j] for run in tree_runs]
                    wall = statistics.median(x["wall_ms"] for x in rows)
                    cpu = statistics.median(x["cpu_ms"] for x in rows)
                    digests = {x["tokens"] for x in rows}
                    same = ", ".join(sorted(digests)) if ref == i else (
                        f"= {cases[ref][0]}" if digests == {runs[ref][0]["rows"][j]["tokens"]}
                        else f"DIFFER ({', '.join(sorted(digests))})")
                    loads = [x["load"] for x in rows]
                    if row["batch"] == "first token":
                        what = f"first token ({statistics.median(x['computed'] for x in rows):.0f} tokens computed)"
                        per = "-"
                    else:
                        what, per = str(row["batch"]), f"{cpu / row['batch']:.1f}"
                    print(f"| {name} | {tree_runs[0]['block_size']} | {what} | {wall:.1f} | {cpu:.1f} | {per} | "
                          f"{same} | {min(loads):.2f}-{max(loads):.2f} |", flush=True)
            for (name, _, _, _), tree_runs in zip(cases, runs):
                prof = tree_runs[-1].get("profile")
                if not prof:
                    continue
                print(f"\n# {name}, block size {tree_runs[-1]['block_size']}, one sequence's step: "
                      f"{prof['aten_ms']:.1f} ms of op self time (profiler)"
                      + ("" if "floor" not in prof else
                      f"; the step's products alone over the model's {prof['weights_mb']:.0f} MB of fp32 weights (CPU ms): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in prof["floor"].items())
                      + "; transposed vs as loaded, largest difference: "
                      + ", ".join(f"{v:.1e} ({k} row{'s' if int(k) > 1 else ''})" for k, v in prof["differs"].items())))
                print("| op | self CPU ms / step | calls / step |")
                print("|---|---|---|")
                for key, ms, calls in prof["top"]:
                    print(f"| {key} | {ms:.2f} | {calls:.0f} |")
        finally:
            if worktree is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)


def first_token_sizes(args: argparse.Namespace) -> None:
    """`--first-token-sizes`: one worker process over this tree, the sizes taking turns."""
    with tempfile.TemporaryDirectory() as tmp:
        tree, _ = source_tree(str(ROOT), Path(tmp))
        load = os.getloadavg()[0]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--tree", str(tree), "--prompt",
               str(args.prompt), "--tail", str(args.tail), "--rounds", str(args.rounds), "--first-token-sizes",
               args.first_token_sizes, "--variant", "int8" if args.int8 else ""]
        cmd += ["--model", args.model] if args.model else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"# {platform.node()}: {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
          f"{'int8' if args.int8 else 'fp32'}, one torch thread, prompts of {args.prompt} tokens, tail {args.tail}; "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print("| block size | keystrokes | first token CPU ms: median | mean | quartiles | tokens computed (median) "
          "| decode step CPU ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for size, row in got.items():
        cpu = sorted(row["cpu"])
        print(f"| {size} | {len(cpu)} | {statistics.median(cpu):.1f} | {statistics.mean(cpu):.1f} | "
              f"{cpu[len(cpu) // 4]:.1f}-{cpu[3 * len(cpu) // 4]:.1f} | {statistics.median(row['computed']):.0f} | "
              f"{statistics.median(row['steps']):.2f} |")


if __name__ == "__main__":
    main()
