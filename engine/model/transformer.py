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

One forward, `forward_packed`, serves every caller: the single-sequence path (`forward` over
a contiguous `KVCache`) and the serving engine (a step's packed tokens over the block pool)
differ only in the K/V store they pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVStore
from .cache import KVCache
from .config import ModelConfig
from .layers import DecoderLayer, LoopGate, RMSNorm, rope_cos_sin


class ForwardStopped(RuntimeError):
    """A forward given up between two layers because its `stop` said so."""


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        shape = (config.vocab_size, config.hidden_size)
        if torch.get_default_device().type == "meta":
            # Built to receive a checkpoint's weights (loader.py): no random init. On meta,
            # nn.Embedding's normal_ goes through torch._refs, which imports torch._dynamo:
            # two seconds of every model load on a laptop CPU.
            self.embed_tokens = nn.Embedding(*shape, _weight=torch.empty(shape))
        else:
            self.embed_tokens = nn.Embedding(*shape)
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
        # The LM head's product when it is not F.linear over output_weight(): int8 weights on a
        # CPU (int8.quantize_model). None: F.linear.
        self.output_head: nn.Module | None = None

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden states [R, hidden] -> logits [R, vocab] (fp32)."""
        if self.output_head is not None:
            return self.output_head(x).float()
        return F.linear(x, self.output_weight()).float()

    def forward(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """input_ids [B, T] continuing the cached sequences -> logits [B, T, vocab] (fp32)."""
        b, t = input_ids.shape
        positions = cache.begin(t)  # [B * T]
        logits = self.forward_packed(input_ids.reshape(-1), positions, cache)
        cache.advance(t)
        return logits.view(b, t, -1)

    def forward_packed(
        self,
        ids: torch.Tensor,  # [N] new tokens of every sequence, packed
        positions: torch.Tensor,  # [N]
        store: KVStore,
        logit_rows: torch.Tensor | None = None,  # [R] rows that need logits (None: all)
    ) -> torch.Tensor:  # [R, vocab] fp32
        return self.logits(self.hidden_packed(ids, positions, store, logit_rows))

    def hidden_packed(
        self, ids: torch.Tensor, positions: torch.Tensor, store: KVStore, logit_rows: torch.Tensor | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor:  # [R, hidden]: the final norm's output, what the LM head multiplies
        """`stop`, asked before each layer after the first: True abandons the forward
        (`ForwardStopped`), leaving the K/V of the layers it ran written in their slots."""
        cfg = self.config
        h = self.model.embed_tokens(ids)  # [N, hidden]
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, h.dtype)
        gates = self.model.gate_projections if cfg.is_loop else None
        layers = self.model.layers
        # Each layer ends with the norm after it (DecoderLayer): the next layer's first norm,
        # the first layer's again between loops, the final norm after the last.
        order = [(loop, i) for loop in range(cfg.loop_num) for i in range(len(layers))]
        x, residual = layers[0].input_layernorm(h), h
        for j, (loop, i) in enumerate(order):
            if j and stop is not None and stop():
                raise ForwardStopped(f"stopped before layer {i} of loop {loop}")
            nxt = layers[order[j + 1][1]].input_layernorm if j + 1 < len(order) else self.model.norm
            x, residual = layers[i](x, residual, cos, sin, store, i, loop, gates[i] if loop else None, nxt)
        return x if logit_rows is None else x[logit_rows]
