"""The training forward: the engine's own modules over whole sequences, without a KV cache.

Exactly the Loop semantics of `loopls.engine.model.CausalLM.forward` (docs/engine.md): loop 0
is causal attention and its K/V are kept per layer; a later loop recomputes q, k, v from its
own hidden state, attends globally over loop 0's K/V of the same layer (causal) and locally
over its own K/V in a causal window of W keys including the current token, mixes the two per
head with the gate g = sigmoid(w_h . q_h + b_h) of the post-RoPE query, then the shared
o_proj; the final norm runs once. tests/training proves the logits equal the engine's.

Attention is SDPA throughout: the causal calls take the flash kernel on a GPU; the sliding
window is computed block-wise (queries in blocks of W see their own block and the one
before, masked to the window), so it costs O(T*W) rather than a [T, T] mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from loopls.engine.model.layers import rope_cos_sin
from loopls.engine.model.transformer import CausalLM


def _grouped(k: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, KVH, T, D] -> [B, H, T, D], each KV head repeated for its query heads."""
    return k.repeat_interleave(heads // k.shape[1], dim=1) if k.shape[1] != heads else k


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention of q [B, H, T, D] over k/v [B, KVH, T, D] where query i sees keys j with
    0 <= i - j < window; returns [B, H, T, D]."""
    b, h, t, d = q.shape
    w = window
    n = -(-t // w)
    pad = n * w - t
    k, v = _grouped(k, h), _grouped(v, h)
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    # keys of block j: blocks j-1 and j (a zero block in front of the first)
    k2 = F.pad(k, (0, 0, w, 0)).unfold(2, 2 * w, w).transpose(-1, -2)  # [B, H, n, 2W, D]
    v2 = F.pad(v, (0, 0, w, 0)).unfold(2, 2 * w, w).transpose(-1, -2)
    qb = q.reshape(b, h * n, w, d)  # SDPA's fused kernels take 4-D inputs: fold blocks into heads
    k2, v2 = k2.reshape(b, h * n, 2 * w, d), v2.reshape(b, h * n, 2 * w, d)
    qi = torch.arange(w, device=q.device)[:, None] + w  # query position inside the 2W span
    kj = torch.arange(2 * w, device=q.device)[None, :]
    diff = qi - kj
    mask = (diff >= 0) & (diff < w)  # [W, 2W]
    first = mask & (kj >= w)  # block 0 has no real keys in front
    masks = torch.stack([first] + [mask] * (n - 1)).expand(h, n, w, 2 * w).reshape(1, h * n, w, 2 * w)
    o = F.scaled_dot_product_attention(qb, k2, v2, attn_mask=masks)
    return o.reshape(b, h, n * w, d)[:, :, :t]


def hidden_states(model: CausalLM, ids: torch.Tensor, rope_dtype: torch.dtype | None = None) -> torch.Tensor:
    """ids [B, T] (positions 0..T-1) -> final-normed hidden states [B, T, hidden].

    `rope_dtype`: the dtype of the cos/sin tables; under bf16 autocast pass bfloat16 so that q
    and k stay bf16 (as in the engine's bf16 inference) and SDPA can use the flash kernel."""
    cfg = model.config
    backbone = model.model
    b, t = ids.shape
    # The engine's modules work on packed tokens [N, ...]: the batch's rows one after another.
    h = backbone.embed_tokens(ids.reshape(-1))  # [B*T, hidden]
    positions = torch.arange(t, device=ids.device).repeat(b)
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, rope_dtype or h.dtype)
    heads = cfg.num_attention_heads

    def rows(x: torch.Tensor) -> torch.Tensor:  # [B*T, heads, D] -> [B, heads, T, D]
        return x.view(b, t, x.shape[1], x.shape[2]).transpose(1, 2)

    loop0: list[tuple[torch.Tensor, torch.Tensor]] = []
    for loop in range(cfg.loop_num):
        for i, layer in enumerate(backbone.layers):
            q, k, v = (rows(x) for x in layer.self_attn.qkv(layer.input_layernorm(h), cos, sin))
            if loop == 0:
                loop0.append((k, v))
                o = F.scaled_dot_product_attention(q, _grouped(k, heads), _grouped(v, heads), is_causal=True)
            else:
                k0, v0 = loop0[i]
                glob = F.scaled_dot_product_attention(q, _grouped(k0, heads), _grouped(v0, heads), is_causal=True)
                local = window_attention(q, k, v, cfg.loop_window_size)
                gate = backbone.gate_projections[i]
                g = torch.sigmoid(torch.einsum("bhtd,hd->bht", q, gate.weight) + gate.bias[None, :, None])
                o = g.unsqueeze(-1) * glob + (1 - g.unsqueeze(-1)) * local
            h = h + layer.self_attn.o_proj(o.transpose(1, 2).reshape(b * t, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
    return backbone.norm(h).view(b, t, -1)


def logits(model: CausalLM, ids: torch.Tensor) -> torch.Tensor:
    """ids [B, T] -> fp32 logits [B, T, vocab] (for tests and small batches)."""
    return F.linear(hidden_states(model, ids), model.output_weight()).float()


def loss_sum(model: CausalLM, ids: torch.Tensor, labels: torch.Tensor,
             rope_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (label -100: no loss); the
    trainer divides by the count it took from the labels on the host, so no step waits for
    the GPU to count them."""
    h = hidden_states(model, ids, rope_dtype)
    out = F.linear(h, model.output_weight()).float().flatten(0, 1)
    return F.cross_entropy(out, labels.flatten(), ignore_index=-100, reduction="sum")


def loss(model: CausalLM, ids: torch.Tensor, labels: torch.Tensor,
         rope_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over labelled positions and the number of those positions."""
    count = int((labels != -100).sum())
    return loss_sum(model, ids, labels, rope_dtype) / max(count, 1), count
