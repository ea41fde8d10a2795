"""Typing-trace benchmark of the serving engine (CPU, random weights).

A user types through a file: one request per keystroke, each superseding (cancelling) the
last, as the language server does. Prints one table with, side by side in the same run:

- prompt tokens served from the prefix cache over the whole trace,
- time to first token, warm (the engine that served the trace) vs cold (the same prompts on
  a second engine with prefix caching off), on the same sampled keystrokes,
- decode speed of an edit-like completion with prompt-lookup speculation vs without
  (outputs are checked to be identical).

The model is random, built here (not in the engine) with a create_tiny-like helper: a tiny
2-layer model would be all Python overhead, so the default is hidden 512, 8 layers. Random
weights do not copy text the way a trained code model does, so the speculative figure depends
on how much the random model's greedy output happens to repeat the prompt; the acceptance
rate is printed beside it.

    python bench/typing_trace.py FILE [--line N] [--chars C] [--arch iquestcoder]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from loopls.engine.serving.async_engine import AsyncEngine
from loopls.engine.model.config import ModelConfig
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.transformer import CausalLM
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.model.tiny import create_tiny


def make_bench_model(arch: str, vocab: int, hidden: int, layers: int, window: int, seed: int) -> CausalLM:
    """A random Llama-shaped (or Loop) model; head_dim 64, GQA 2:1, fp32 for the CPU."""
    heads = max(hidden // 64, 1)
    config = ModelConfig(
        model_type=arch,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(heads // 2, 1),
        head_dim=hidden // heads,
        max_position_embeddings=32768,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        torch_dtype="float32",
        loop_num=2 if arch == "iquestloopcoder" else 1,
        loop_window_size=window if arch == "iquestloopcoder" else 0,
    )
    gen = torch.Generator().manual_seed(seed)
    model = CausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                # std ~ 1/sqrt(fan-in) keeps activations O(1) through the random stack
                p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[-1] ** -0.5))
    return model.eval().requires_grad_(False)


def fim_prompt(tok, prefix: str, suffix: str) -> list[int]:
    """Suffix-prefix-middle order: the suffix and the typed prefix stay put while the user
    types, so everything but the last few tokens is a prefix of the previous prompt."""
    s = tok.special
    return [s.fim_suffix, *tok.encode(suffix), s.fim_prefix, *tok.encode(prefix), s.fim_middle]


async def run_trace(args, tok, warm: AsyncEngine, cold: AsyncEngine, text: str, start: int) -> dict:
    params = SamplingParams(max_tokens=args.max_tokens, min_tokens=args.max_tokens)
    suffix = text[start + args.chars : start + args.chars + args.suffix_chars]
    prompt_tokens = cached = 0
    warm_ttft, cold_ttft = [], []
    stream = None
    for i in range(1, args.chars + 1):
        # The prefix window starts at a fixed place, as a packer with a stable order keeps it.
        ids = fim_prompt(tok, text[max(0, start - args.prefix_chars) : start + i], suffix)
        stream = warm.submit(ids, params, supersede="file")  # cancels the previous keystroke
        async for _ in stream:
            break
        if i % args.cold_every == 0:
            stream.cancel()  # measure the cold engine alone on the CPU
            out = await stream.result()
            cold_stream = cold.submit(ids, params)
            async for _ in cold_stream:
                break
            cold_stream.cancel()
            cold_out = await cold_stream.result()
            warm_ttft.append(out.metrics["time_to_first_token_s"])
            cold_ttft.append(cold_out.metrics["time_to_first_token_s"])
        else:
            out = None
        if out is None:
            stream.cancel()
            out = await stream.result()
        prompt_tokens += out.prompt_tokens
        cached += out.metrics["cached_tokens"]
    return {
        "requests": args.chars,
        "prompt_tokens": prompt_tokens,
        "cached_pct": 100.0 * cached / prompt_tokens,
        "mean_prompt": prompt_tokens / args.chars,
        "warm_ttft": statistics.median(warm_ttft),
        "cold_ttft": statistics.median(cold_ttft),
        "samples": len(warm_ttft),
        "blocks": warm.stats(),
    }


async def run_spec(args, tok, engine: AsyncEngine, text: str, start: int) -> dict:
    """An edit-like completion: the block being rewritten is in the prompt just above."""
    block = text[start : start + args.edit_chars]
    prompt = tok.encode(text[max(0, start - args.edit_chars) : start] + block + "\n# edited:\n" + block[:80])
    params = SamplingParams(max_tokens=args.spec_tokens, min_tokens=args.spec_tokens)
    times: dict[bool, list[float]] = {False: [], True: []}
    outs: dict[bool, list] = {False: [], True: []}
    for _ in range(args.spec_repeats):  # alternate, so that load changes hit both alike
        for speculate in (False, True):
            t0 = time.perf_counter()
            out = await engine.submit(prompt, params, speculate=speculate).result()
            times[speculate].append(time.perf_counter() - t0)
            outs[speculate].append(out)
    plain, spec = statistics.median(times[False]), statistics.median(times[True])
    p_out, s_out = outs[False][0], outs[True][0]
    m = s_out.metrics
    return {
        "identical": all(o.token_ids == p_out.token_ids for o in outs[False] + outs[True]),
        "plain_s": plain,
        "spec_s": spec,
        "tokens": len(p_out.token_ids),
        "drafted": m["draft_tokens"],
        "accepted": m["accepted_draft_tokens"],
        "prompt_tokens": len(prompt),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path, help="a source file to type through (from any repository)")
    ap.add_argument("--line", type=int, default=0, help="1-based line where typing starts (default: middle)")
    ap.add_argument("--chars", type=int, default=120, help="keystrokes in the trace")
    ap.add_argument("--prefix-chars", type=int, default=3000, help="text before the cursor in the prompt")
    ap.add_argument("--suffix-chars", type=int, default=600, help="text after the typed span in the prompt")
    ap.add_argument("--cold-every", type=int, default=10, help="also time a cold request every N keystrokes")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--arch", default="iquestcoder", choices=("iquestcoder", "qwen2", "iquestloopcoder"))
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--window", type=int, default=16, help="Loop window W (iquestloopcoder)")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--edit-chars", type=int, default=400)
    ap.add_argument("--spec-tokens", type=int, default=64)
    ap.add_argument("--spec-repeats", type=int, default=5, help="timed runs of each, median reported")
    ap.add_argument("--checkpoint", type=Path, help="a checkpoint folder to use instead of random weights")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    text = args.file.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    line = args.line or len(lines) // 2
    start = sum(len(x) for x in lines[: max(line - 1, 0)])
    if start + args.chars > len(text):
        print(f"{args.file}: not enough text after line {line} for {args.chars} keystrokes", file=sys.stderr)
        return 2
    if args.checkpoint:
        lm = load_checkpoint(args.checkpoint)  # e.g. one made by bench/train_bench_model.py
        tok, model = lm.tokenizer, lm.model
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tok = load_checkpoint(create_tiny(Path(tmp) / "tok", "iquestcoder")).tokenizer
        model = make_bench_model(args.arch, tok.vocab_size, args.hidden, args.layers, args.window, seed=0)
    base = dict(num_blocks=2048, block_size=args.block_size, max_step_tokens=512, max_num_seqs=8)
    warm = AsyncEngine(model, SchedulerConfig(**base), eos_ids=tuple(tok.special.eos_ids))
    cold = AsyncEngine(model, SchedulerConfig(**base, enable_prefix_caching=False), eos_ids=tuple(tok.special.eos_ids))

    async def go():
        async with warm, cold:
            trace = await run_trace(args, tok, warm, cold, text, start)
            spec = await run_spec(args, tok, warm, text, start)
        return trace, spec

    trace, spec = asyncio.run(go())
    print_table(args, model, trace, spec, line)
    return 0


def print_table(args, model: CausalLM, trace: dict, spec: dict, line: int) -> None:
    cfg = model.config
    params = sum(p.numel() for p in model.parameters()) / 1e6
    kind = f"checkpoint {args.checkpoint}" if args.checkpoint else "random"
    print(f"model: {kind} {cfg.model_type}, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers"
          f"{f' x{cfg.loop_num} loops, W={cfg.loop_window_size}' if cfg.is_loop else ''}, {params:.1f}M params, "
          f"fp32, {torch.get_num_threads()} threads; block size {args.block_size}")
    print(f"trace: {args.file} from line {line}, {trace['requests']} keystrokes, each cancelling the last; "
          f"mean prompt {trace['mean_prompt']:.0f} tokens")
    speed_plain = spec["tokens"] / spec["plain_s"]
    speed_spec = spec["tokens"] / spec["spec_s"]
    rows = [
        ("prompt tokens served from cache", f"{trace['cached_pct']:.1f}%", "goal >= 80%"),
        (f"TTFT warm, median of {trace['samples']}", f"{trace['warm_ttft'] * 1000:.1f} ms", ""),
        (f"TTFT cold, same prompts", f"{trace['cold_ttft'] * 1000:.1f} ms", ""),
        ("cold / warm TTFT", f"{trace['cold_ttft'] / trace['warm_ttft']:.1f}x", "goal >= 5x"),
        (f"plain decode ({spec['tokens']} tokens, prompt {spec['prompt_tokens']}), median of {args.spec_repeats}",
         f"{speed_plain:.1f} tok/s", ""),
        ("speculative decode, same request", f"{speed_spec:.1f} tok/s", ""),
        ("speculative / plain", f"{speed_spec / speed_plain:.2f}x", "goal >= 1.5x"),
        ("draft tokens accepted (one run)", f"{spec['accepted']}/{spec['drafted']}", ""),
        ("speculative output identical to plain", str(spec["identical"]), "must be True"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value | note |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for name, value, note in rows:
        print(f"| {name.ljust(width)} | {value} | {note} |")


if __name__ == "__main__":
    raise SystemExit(main())
