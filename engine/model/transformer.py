"""Decoder-only transformers: Llama/IQuestCoder, Qwen2 and the IQuest Loop variant.

Module and parameter names follow the Hugging Face checkpoints so that the loader maps
weights by name. Tensor parallelism is applied afterwards as a transform (parallel.py);
this file knows nothing about it beyond reading head counts from its own modules.

Loop semantics (vLLM's iquest_loopcoder is the specification): the same decoder layers run
`loop_num` times with shared weights. Loop 0 is ordinary causal attention and writes the
global K/V cache. A later loop recomputes q, k, v from its own hidden states, attends
globally with q over loop 0's K/V of the same layer (writing nothing there) and locally over
its own K/V in a causal window of `loop_window_size` keys including the current token, and
mixes the two per head with g = sigmoid(w_h . q_h + b_h) on the post-RoPE query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 as the reference implementations do, then scale in the model dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for `positions` [T] -> each [T, head_dim]."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; rotate-half convention of the Llama checkpoints."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def window_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Boolean [T, S] mask: key visible if causal and (optionally) within `window` keys."""
    diff = q_pos[:, None] - k_pos[None, :]
    allowed = diff >= 0
    if window is not None:
        allowed &= diff < window
    return allowed


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool = False
) -> torch.Tensor:
    """q [B, H, T, D], k/v [B, KVH, S, D], mask [T, S] or [B, T, S] -> [B, H, T, D].

    `mask=None` means every key is visible (one new token: decode), `causal=True` the plain
    lower triangle with T == S (prefill from position 0): both let SDPA pick a flash kernel
    instead of the masked one. GQA heads are grouped inside SDPA rather than copied."""
    if mask is not None:
        return attend_masked(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])


def attend_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked grouped-query attention without copying K/V per head: the G query heads that
    share a KV head are folded into the query length ([B, KVH, G*T, D]) and the mask repeated
    G times. (With enable_gqa a masked call falls back to SDPA's math kernel, which
    materialises the whole score matrix: 20 GiB for 32 x 2K-token prompts.)"""
    b, h, t, d = q.shape
    groups = h // k.shape[1]
    mask = mask if mask.dim() == 3 else mask[None]  # [B or 1, T, S]
    folded = q.reshape(b, k.shape[1], groups * t, d)
    o = F.scaled_dot_product_attention(folded, k, v, attn_mask=mask[:, None].repeat(1, 1, groups, 1))
    return o.reshape(b, h, t, d)  # CUDA kernels may return strides a view cannot follow


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        hidden, d, bias = config.hidden_size, config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(hidden, self.num_heads * d, bias=bias)
        self.k_proj = nn.Linear(hidden, self.num_kv_heads * d, bias=bias)
        self.v_proj = nn.Linear(hidden, self.num_kv_heads * d, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * d, hidden, bias=config.o_proj_bias)

    def qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, hidden] -> post-RoPE q [B, H, T, D], k and v [B, KVH, T, D]."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def project_out(self, o: torch.Tensor) -> torch.Tensor:
        """o [B, H, T, D] -> [B, T, hidden]."""
        b, _, t, _ = o.shape
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LoopGate(nn.Module):
    """Per-head gate of a Loop layer: g_h = sigmoid(w_h . q_h + b_h)."""

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q [B, H, T, D] -> g [B, H, T, 1]."""
        logits = torch.einsum("bhtd,hd->bht", q, self.weight) + self.bias[None, :, None]
        return torch.sigmoid(logits).unsqueeze(-1)


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.is_loop:
            self.gate_projections = nn.ModuleList(
                LoopGate(config.num_attention_heads, config.head_dim)
                for _ in range(config.num_hidden_layers)
            )


class CausalLM(nn.Module):
    """Forward over new tokens with a KV cache; returns logits for every new position."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight

    def forward(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """input_ids [B, T] continuing the cached sequence -> logits [B, T, vocab] (fp32)."""
        cfg = self.config
        start = cache.length
        t = input_ids.shape[1]
        if start + t > cache.capacity:
            raise ValueError(f"sequence of {start + t} tokens exceeds the cache ({cache.capacity})")
        h = self.model.embed_tokens(input_ids)
        positions = torch.arange(start, start + t, device=input_ids.device)
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, h.dtype)
        # decode (t == 1) sees every cached key; a fresh prefill is the plain triangle
        mask = None if t == 1 or start == 0 else window_mask(
            positions, torch.arange(start + t, device=input_ids.device), None
        )  # [T, start+T]
        for loop in range(cfg.loop_num):
            for i, layer in enumerate(self.model.layers):
                x = layer.input_layernorm(h)
                q, k, v = layer.self_attn.qkv(x, cos, sin)
                if loop == 0:
                    k_all, v_all = cache.append_global(i, k, v)
                    o = attend(q, k_all, v_all, mask, causal=start == 0)
                else:
                    o = self._loop_attention(cache, loop, i, q, k, v, positions, start)
                h = h + layer.self_attn.project_out(o)
                h = h + layer.mlp(layer.post_attention_layernorm(h))
        cache.advance(t)
        h = self.model.norm(h)
        return F.linear(h, self.output_weight()).float()

    def _loop_attention(
        self,
        cache: KVCache,
        loop: int,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        positions: torch.Tensor,
        start: int,
    ) -> torch.Tensor:
        cfg = self.config
        k_glob, v_glob = cache.global_kv(layer, start + q.shape[2])
        t = q.shape[2]
        glob_mask = None if t == 1 or start == 0 else window_mask(
            positions, torch.arange(k_glob.shape[2], device=q.device), None
        )
        glob = attend(q, k_glob, v_glob, glob_mask, causal=start == 0)
        k_loc, v_loc, first = cache.append_window(loop, layer, k, v)
        k_pos = torch.arange(first, first + k_loc.shape[2], device=q.device)
        # a decode step's window holds at most W keys, all visible
        local_mask = None if t == 1 else window_mask(positions, k_pos, cfg.loop_window_size)
        local = attend(q, k_loc, v_loc, local_mask)
        g = self.model.gate_projections[layer](q)
        return g * glob + (1 - g) * local
