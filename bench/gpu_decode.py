"""Single-GPU decode speed: loopls' engine vs Hugging Face transformers, against the roofline.

Random bf16 weights of a real model shape (IQuest-Coder-V1 7B/14B/40B, or a small shape for a
smoke run) are built directly on the GPU; the same weights are loaded into transformers'
LlamaForCausalLM for the iquestcoder rows (the Loop model has no transformers peer). For each
row: batch-1 decode tokens/s after a prompt of --prompt tokens, the bandwidth roofline
(weights + KV read once per step over the measured device copy bandwidth), and the share of
it reached. A 32-sequence batch measures throughput. Prefill time is reported too.

    python bench/gpu_decode.py --shape 14b --prompt 2048 --new 64

The engine must be importable as `loopls.engine`: `pip install -e .` or, on a machine that
cannot install, a namespace folder with links (see docs/benchmarks.md for the exact command).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from loopls.engine.model.cache import KVCache
from loopls.engine.model.config import ModelConfig
from loopls.engine.model.transformer import CausalLM

SHAPES = {  # layers; everything else as IQuest-Coder-V1 (REFERENCE.md)
    "7b": 14, "14b": 28, "40b": 80, "small": 4,
}


def make_config(shape: str, arch: str) -> ModelConfig:
    return ModelConfig(
        model_type=arch, vocab_size=76800, hidden_size=5120, intermediate_size=27648,
        num_hidden_layers=SHAPES[shape], num_attention_heads=40, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5, torch_dtype="bfloat16",
        loop_num=2 if arch == "iquestloopcoder" else 1, loop_window_size=64 if arch == "iquestloopcoder" else 0,
    )


def build(config: ModelConfig) -> CausalLM:
    torch.manual_seed(0)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = CausalLM(config)
        torch.set_default_dtype(torch.float32)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.data.fill_(1.0)
        else:  # small random weights keep activations finite through 80 layers
            p.data.normal_(0, 0.02)
    return model.eval().requires_grad_(False)


def spin_up(seconds: float = 3.0) -> None:
    """Run the GPU flat out for a while: an idle card starts at low clocks, and the first
    arch timed would otherwise read several times slower (seen on an H100 here)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * x.numel() * 20 / (time.perf_counter() - t)


@torch.inference_mode()
def ours(model: CausalLM, batch: int, prompt: int, new: int) -> tuple[float, float]:
    """(prefill seconds, decode tokens/s per sequence)"""
    cfg = model.config
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt), device="cuda")
    cache = KVCache.for_model(model, batch, prompt + new + 8, torch.bfloat16, "cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    logits = model(ids, cache)
    torch.cuda.synchronize()
    prefill = time.perf_counter() - t0
    tok = logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(3):  # warm-up steps (allocator, kernels)
        tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(new):
        tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    return prefill, new / (time.perf_counter() - t0)


@torch.inference_mode()
def serving(model: CausalLM, batch: int, prompt: int, new: int) -> tuple[float, float]:
    """The language server's path: the serving core (paged KV, continuous batching), plain
    greedy without speculation. (prefill seconds for all, decode tokens/s per sequence)"""
    from loopls.engine.serving.core import EngineCore
    from loopls.engine.model.sampling_params import SamplingParams
    from loopls.engine.serving.scheduler import SchedulerConfig

    block = 16
    blocks = batch * (-(-(prompt + new + 8) // block)) + 64
    core = EngineCore(model, SchedulerConfig(num_blocks=blocks, block_size=block, max_num_seqs=batch,
                                             max_step_tokens=8192, num_speculative_tokens=0))
    gen = torch.Generator().manual_seed(7)
    for i in range(batch):
        ids = torch.randint(0, model.config.vocab_size, (prompt,), generator=gen).tolist()
        core.add(f"r{i}", ids, SamplingParams(max_tokens=new + 1, min_tokens=new + 1))
    started, first = {}, None
    t0 = time.perf_counter()
    decoded = 0
    while core.has_work:
        events = core.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        for ev in events:
            if first is not None:
                decoded += len(ev.new_tokens)
            started.setdefault(ev.seq.request_id, time.perf_counter())
        if first is None and len(started) == batch:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - t0, decoded / batch / (end - first)


@torch.inference_mode()
def hf_peer(model: CausalLM, prompt: int, new: int) -> tuple[float, float, float]:
    """transformers LlamaForCausalLM on the same weights: (prefill s, decode tok/s, max |Δlogit|)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    hf_cfg = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, rope_theta=c.rope_theta,
        rms_norm_eps=c.rms_norm_eps, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=False, attn_implementation="sdpa",
    )
    with torch.device("meta"):
        hf = LlamaForCausalLM(hf_cfg)
    hf.load_state_dict(model.state_dict(), assign=True, strict=True)
    hf = hf.to(torch.bfloat16).eval()
    # after the cast: RoPE frequencies must stay fp32, as from_pretrained keeps them
    hf.model.rotary_emb = type(hf.model.rotary_emb)(hf_cfg, device="cuda")
    ids = torch.randint(0, c.vocab_size, (1, prompt), device="cuda")
    ref = hf(ids).logits[:, -8:].float()
    mine = model(ids, KVCache.for_model(model, 1, prompt, torch.bfloat16, "cuda"))[:, -8:]
    diff = (ref - mine).abs().max().item()
    kwargs = dict(do_sample=False, pad_token_id=0)
    hf.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    hf.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    hf.generate(ids, max_new_tokens=new + 1, min_new_tokens=new + 1, **kwargs)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    prefill = t1 - t0
    decode = new / ((t2 - t1) - prefill)
    del hf
    return prefill, decode, diff


@torch.inference_mode()
def profile_decode(model: CausalLM, prompt: int) -> None:
    """Top CUDA and CPU ops over 5 batch-1 decode steps."""
    from torch.profiler import ProfilerActivity, profile

    cache = KVCache.for_model(model, 1, prompt + 16, torch.bfloat16, "cuda")
    tok = model(torch.randint(0, 100, (1, prompt), device="cuda"), cache)[:, -1].argmax(-1, keepdim=True)
    for _ in range(3):
        tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))


def weight_bytes(model: CausalLM) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def kv_bytes_per_step(config: ModelConfig, context: int, batch: int) -> int:
    per_token = config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2 * 2
    window = (config.loop_num - 1) * min(context, config.loop_window_size) * per_token
    return batch * (context * per_token * config.loop_num + window)  # global K/V is read once per loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="14b", choices=sorted(SHAPES))
    ap.add_argument("--archs", default="iquestcoder,iquestloopcoder")
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print a profile of batch-1 decode per arch")
    args = ap.parse_args()
    # As the engine's loader does: cuDNN SDPA re-plans for every new key length (both
    # engines below would pay for it on every decode step).
    torch.backends.cuda.enable_cudnn_sdp(False)
    spin_up()
    bw = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  copy bandwidth {bw / 1e12:.2f} TB/s")
    rows = []
    for arch in args.archs.split(","):
        config = make_config(args.shape, arch)
        model = build(config)
        wb = weight_bytes(model)
        if args.profile:
            profile_decode(model, args.prompt)
        passes = config.loop_num  # the Loop model reads its weights once per loop
        for batch in (1, args.batch):
            prefill, tps = ours(model, batch, args.prompt, args.new)
            floor = (wb * passes + kv_bytes_per_step(config, args.prompt, batch)) / bw
            rows.append((arch, "loopls (contiguous cache)", batch, prefill, tps, tps * batch, 1 / floor))
            torch.cuda.empty_cache()
            prefill, tps = serving(model, batch, args.prompt, args.new)
            rows.append((arch, "loopls serving core (paged)", batch, prefill, tps, tps * batch, 1 / floor))
            torch.cuda.empty_cache()
        if arch == "iquestcoder" and not args.no_hf:
            prefill, tps, diff = hf_peer(model, args.prompt, args.new)
            floor = (wb + kv_bytes_per_step(config, args.prompt, 1)) / bw
            rows.append((arch, f"transformers (max|Δlogit| {diff:.3f})", 1, prefill, tps, tps, 1 / floor))
        del model
        gc.collect()
        torch.cuda.empty_cache()
    print(f"\nshape {args.shape} ({SHAPES[args.shape]} layers, bf16), prompt {args.prompt}, {args.new} decode steps")
    print(f"{'arch':<16} {'engine':<36} {'batch':>5} {'prefill s':>9} {'tok/s/seq':>9} {'tok/s':>8} {'roofline':>8} {'% roof':>6}")
    for arch, engine, batch, prefill, tps, total, roof in rows:
        print(f"{arch:<16} {engine:<36} {batch:>5} {prefill:>9.3f} {tps:>9.1f} {total:>8.1f} {roof:>8.1f} {100 * tps / roof:>5.0f}%")


if __name__ == "__main__":
    main()
