"""Tensor-parallel decode: correctness against TP=1 and speed at TP=1/2/4 (issue 7).

Run once per tensor-parallel size with torchrun (one process per GPU; NCCL on GPUs, gloo on
CPU), then compare the runs:

    for n in 1 2 4; do
      torchrun --standalone --nproc-per-node $n bench/tp_decode.py --shape 14b --out runs/tp$n.json
    done
    python bench/tp_decode.py --compare runs/tp1.json runs/tp2.json runs/tp4.json

Every rank builds only its slice of a random-weight model of the IQuest shape: each full
weight is drawn from a generator seeded by its name (so every TP size sees the same model)
and sliced at once, so no rank ever holds the whole model. A run records rank 0's greedy
tokens and prefill logits, batch-1 decode tokens/s, 32-sequence throughput, the all-reduce
time per decode step, and the per-GPU bandwidth roofline. Keep NVLink multicast off
(NCCL_NVLS_ENABLE=0); the device machines set it.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import torch
import torch.distributed as dist

from loopls.engine.model.cache import KVCache
from loopls.engine.model.config import ModelConfig
from loopls.engine.model.transformer import CausalLM
from loopls.engine.model.parallel import apply_tensor_parallel, init_distributed, local_device, shard_rule

SHAPES = {
    # name: (layers, hidden, ffn, heads, kv heads, head_dim, vocab)
    "14b": (28, 5120, 27648, 40, 8, 128, 76800),
    "40b": (80, 5120, 27648, 40, 8, 128, 76800),
    "7b": (14, 5120, 27648, 40, 8, 128, 76800),
    "cpu-smoke": (2, 256, 512, 8, 4, 32, 1024),
}


def make_config(shape: str, arch: str) -> ModelConfig:
    layers, hidden, ffn, heads, kv, hd, vocab = SHAPES[shape]
    loop = arch == "iquestloopcoder"
    return ModelConfig(
        model_type=arch, vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv, head_dim=hd,
        max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5, torch_dtype="bfloat16",
        loop_num=2 if loop else 1, loop_window_size=64 if loop else 0,
    )


def build_shard(config: ModelConfig, shard, device: torch.device, dtype: torch.dtype) -> CausalLM:
    """This rank's slice of a deterministic random model, never materialising the whole."""
    with torch.device("meta"):
        model = CausalLM(config)
    apply_tensor_parallel(model, shard)
    full = {n: p.shape for n, p in CausalLM(config).to("meta").named_parameters()}
    for name, param in list(model.named_parameters()):
        gen = torch.Generator(device=device).manual_seed(zlib.crc32(name.encode()))
        if name.endswith("norm.weight"):
            value = torch.ones(full[name], device=device, dtype=dtype)
        else:
            value = (torch.randn(full[name], generator=gen, device=device, dtype=torch.float32) * 0.02).to(dtype)
        rule = shard_rule(name, config, shard)
        if rule is not None:
            dim, part = rule
            value = value.narrow(dim, part.start, part.stop - part.start).clone()
        module_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(module_name), attr, torch.nn.Parameter(value, requires_grad=False))
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def decode_speed(model: CausalLM, device, dtype, batch: int, prompt: int, new: int) -> tuple[float, list[int], torch.Tensor]:
    """(tokens/s per sequence, rank 0's greedy tokens of sequence 0, prefill last logits)."""
    gen = torch.Generator(device="cpu").manual_seed(1234)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), generator=gen).to(device)
    cache = KVCache.for_model(model, batch, prompt + new + 8, dtype, device)
    logits = model(ids, cache)[:, -1]
    first_logits = logits[0].float().cpu()
    tok = logits.argmax(-1, keepdim=True)
    tokens = [int(tok[0])]
    for _ in range(3):
        tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(tok[0]))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(new):
        tok = model(tok, cache)[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(tok[0]))  # .item() syncs each step, as a real decode loop does
    sync(device)
    return new / (time.perf_counter() - t0), tokens, first_logits


def allreduce_per_step(config: ModelConfig, device, dtype, batch: int, repeats: int = 50) -> float:
    """Seconds of all-reduce in one decode step: two per layer per loop on [batch, hidden]."""
    if dist.get_world_size() == 1:
        return 0.0
    x = torch.randn(batch, 1, config.hidden_size, device=device, dtype=dtype)
    calls = 2 * config.num_hidden_layers * config.loop_num
    for _ in range(5):
        dist.all_reduce(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for _ in range(calls):
            dist.all_reduce(x)
    sync(device)
    return (time.perf_counter() - t0) / repeats


def bandwidth(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(20):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 20 / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> None:
    shard = init_distributed()
    device = local_device(shard)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.enable_cudnn_sdp(False)  # as the engine's loader does
    bw = bandwidth(device)
    results = {"tp": shard.world, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "bandwidth_bytes_s": bw, "shape": args.shape, "rows": []}
    for arch in args.archs.split(","):
        config = make_config(args.shape, arch)
        model = build_shard(config, shard, device, dtype)
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        tps1, tokens, logits = decode_speed(model, device, dtype, 1, args.prompt, args.new)
        tps32, _, _ = decode_speed(model, device, dtype, args.batch, args.prompt, args.new)
        ar = allreduce_per_step(config, device, dtype, 1)
        roof = bw / (weights * config.loop_num)  # steps/s if every weight byte is read once per loop
        results["rows"].append({
            "arch": arch, "tokens": tokens, "logits": logits.tolist() if shard.rank == 0 else None,
            "tok_s_batch1": tps1, "tok_s_batch32_total": tps32 * args.batch, "allreduce_s_per_step": ar,
            "weight_bytes_per_gpu": weights, "roofline_tok_s": roof,
        })
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if shard.rank == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results))
    dist.destroy_process_group()


def compare(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    base = runs[0]
    print(f"device: {base['device']}  shape {base['shape']}  bandwidth {base['bandwidth_bytes_s'] / 1e12:.2f} TB/s")
    print(f"{'arch':<16} {'TP':>3} {'same tokens':>11} {'max|Δlogit|':>11} {'tok/s b1':>9} {'tok/s b32':>9} "
          f"{'allreduce ms/step':>17} {'roofline':>8} {'% roof':>6}")
    for run_ in runs:
        for row, ref in zip(run_["rows"], base["rows"]):
            same = row["tokens"] == ref["tokens"]
            diff = (torch.tensor(row["logits"]) - torch.tensor(ref["logits"])).abs().max().item()
            print(f"{row['arch']:<16} {run_['tp']:>3} {str(same):>11} {diff:>11.4f} {row['tok_s_batch1']:>9.1f} "
                  f"{row['tok_s_batch32_total']:>9.1f} {row['allreduce_s_per_step'] * 1e3:>17.2f} "
                  f"{row['roofline_tok_s']:>8.1f} {100 * row['tok_s_batch1'] / row['roofline_tok_s']:>5.0f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="14b", choices=sorted(SHAPES))
    ap.add_argument("--archs", default="iquestcoder,iquestloopcoder")
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default="tp.json")
    ap.add_argument("--compare", nargs="+", metavar="RUN.json")
    args = ap.parse_args()
    if args.compare:
        compare(args.compare)
    else:
        run(args)


if __name__ == "__main__":
    main()
