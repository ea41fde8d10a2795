"""Train the typing-trace benchmark model briefly on Python source (needs a GPU to be quick).

A random model does not copy text, so prompt-lookup speculation has little to accept with it.
This trains the same shape `typing_trace.make_bench_model` builds (hidden 512, 8 layers) for
a few thousand steps on the .py files under a folder, with the create_tiny tokenizer, and
writes a checkpoint folder in Hugging Face layout that `typing_trace.py --checkpoint` loads.

    python bench/train_bench_model.py SOURCE_DIR OUT_DIR [--steps 3000] [--device cuda]

Weights are written as bf16 safetensors shards of at most `--shard-mb` MiB.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typing_trace import make_bench_model  # noqa: E402

from loopls.engine.model.layers import rope_cos_sin  # noqa: E402
from loopls.engine.model.transformer import CausalLM  # noqa: E402
from loopls.engine.model.tiny import create_tiny  # noqa: E402
from loopls.engine.model.tokenizer import Tokenizer  # noqa: E402


def corpus_tokens(source: Path, tok: Tokenizer, max_chars: int) -> torch.Tensor:
    files = sorted(source.rglob("*.py"))
    random.Random(0).shuffle(files)
    texts, total = [], 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if 200 < len(text) < 200_000:
            texts.append(text)
            total += len(text)
        if total >= max_chars:
            break
    ids: list[int] = []
    for text in texts:
        ids.extend(tok.encode(text))
        ids.append(tok.special.eos_ids[0])
    return torch.tensor(ids, dtype=torch.int64)


def train_forward(model: CausalLM, ids: torch.Tensor) -> torch.Tensor:
    """Full-sequence causal forward for training (non-Loop models): logits [B, T, V]."""
    cfg = model.config
    b, t = ids.shape
    h = model.model.embed_tokens(ids).reshape(b * t, -1)  # packed [B*T, hidden], as the engine's layers take
    cos, sin = rope_cos_sin(torch.arange(t, device=ids.device).repeat(b), cfg.head_dim, cfg.rope_theta, h.dtype)
    for layer in model.model.layers:
        q, k, v = layer.self_attn.qkv(layer.input_layernorm(h), cos, sin)  # [B*T, heads, D]
        q, k, v = (x.view(b, t, -1, cfg.head_dim).transpose(1, 2) for x in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        h = h + layer.self_attn.o_proj(o.transpose(1, 2).reshape(b * t, -1))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return F.linear(model.model.norm(h), model.output_weight()).view(b, t, -1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--max-chars", type=int, default=120_000_000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shard-mb", type=int, default=14)
    ap.add_argument("--max-seconds", type=float, default=420, help="stop training early after this long")
    args = ap.parse_args(argv)
    tok_dir = create_tiny(args.out / "tokenizer-src", "iquestcoder")
    tok = Tokenizer.from_folder(tok_dir)
    t0 = time.time()
    data = corpus_tokens(args.source, tok, args.max_chars)
    print(f"corpus: {data.numel()} tokens in {time.time() - t0:.0f}s", flush=True)
    model = make_bench_model("iquestcoder", tok.vocab_size, 512, 8, 16, seed=0).to(args.device).requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, data.numel() - args.seq - 1, (args.batch,), generator=gen)
        batch = torch.stack([data[s : s + args.seq + 1] for s in starts]).to(args.device)
        with torch.autocast(args.device, dtype=torch.bfloat16):
            logits = train_forward(model, batch[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 > args.max_seconds:
            print(f"stopped at step {step} (time budget), loss {loss.item():.3f}", flush=True)
            break
    save(model, tok_dir, args.out, args.shard_mb)
    return 0


def save(model: CausalLM, tok_dir: Path, out: Path, shard_mb: int) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    for name in sorted(state):
        if sum(t.numel() * 2 for t in shards[-1].values()) + state[name].numel() * 2 > shard_mb << 20:
            shards.append({})
        shards[-1][name] = state[name]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, str(out / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    index = {"metadata": {"total_size": sum(t.numel() * 2 for t in state.values())}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    cfg = model.config.to_dict() | {"torch_dtype": "bfloat16", "eos_token_id": list(Tokenizer.from_folder(tok_dir).special.eos_ids)}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        (out / name).write_bytes((tok_dir / name).read_bytes())


if __name__ == "__main__":
    raise SystemExit(main())
