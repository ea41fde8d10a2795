"""Contiguous per-sequence KV cache for the single-sequence path (`generate`, tests, TP).

It is a K/V store in the kernels' paged layout whose blocks are simply laid out in order:
sequence b owns blocks `b * nb ... b * nb + nb - 1` of every layer, so its block table is
fixed. Loop 0 keeps K/V for every token (the global cache). Each later loop of a Loop model
keeps only its last `loop_window_size - 1` tokens: with the current token that is the W keys
its sliding window can see, so memory is one full cache plus a W-token window, never two
full caches. For a forward those held keys and the new tokens' are laid out as a small paged
window cache (`caches(layer, loop)`), and the last W-1 are kept afterwards (`advance`).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionMetadata
from .config import ModelConfig

BLOCK = 16  # tokens per block of this cache's paged view


class KVCache:
    def __init__(
        self,
        config: ModelConfig,
        batch: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        num_kv_heads: int | None = None,
    ) -> None:
        kvh = num_kv_heads or config.num_key_value_heads
        self.blocks_per_seq = -(-capacity // BLOCK)
        shape = (config.num_hidden_layers, batch * self.blocks_per_seq, BLOCK, kvh, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, B * nb, BLOCK, KVH, D]
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.device = self.k.device
        self.batch = batch
        self.capacity = capacity
        self.length = 0
        self.window = max(config.loop_window_size - 1, 0)
        self.loops = config.loop_num
        # windows[loop - 1][layer] = (k, v) [B, held, KVH, D] of positions [length - held, length)
        self.windows: list[list[tuple[torch.Tensor, torch.Tensor] | None]] = [
            [None] * config.num_hidden_layers for _ in range(max(config.loop_num - 1, 0))
        ]
        self._tables = torch.arange(batch * self.blocks_per_seq, device=self.device).view(batch, -1)
        self._step: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._window_origin = 0  # first position of this forward's window caches
        self.meta: AttentionMetadata | None = None

    @classmethod
    def for_model(
        cls, model: nn.Module, batch: int, capacity: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> KVCache:
        """A cache for `model` (a CausalLM) as built here: a tensor-parallel rank holds only
        its KV heads."""
        kvh = model.model.layers[0].self_attn.num_kv_heads
        return cls(model.config, batch, capacity, dtype, device, num_kv_heads=kvh)

    def begin(self, t: int) -> torch.Tensor:
        """Prepare a forward of `t` new tokens per sequence; returns their positions [B * t]."""
        start, end = self.length, self.length + t
        if end > self.capacity:
            raise ValueError(f"sequence of {end} tokens exceeds the cache ({self.capacity})")
        dev, b = self.device, self.batch
        pos = torch.arange(start, end, device=dev)
        rows = torch.arange(b, device=dev)[:, None] * (self.blocks_per_seq * BLOCK)
        window_tables, window_slots = (), ()
        if self.loops > 1:
            # Window caches start at the block holding the first key any new token sees.
            self._window_origin = (start - min(self.window, start)) // BLOCK * BLOCK
            nbw = -(-(end - self._window_origin) // BLOCK)
            first = self._window_origin // BLOCK
            table = torch.zeros(b, -(-end // BLOCK), dtype=torch.long, device=dev)
            table[:, first:] = torch.arange(b * nbw, device=dev).view(b, nbw)
            slots = (torch.arange(b, device=dev)[:, None] * (nbw * BLOCK) + pos - self._window_origin).reshape(-1)
            window_tables = (table,) * (self.loops - 1)
            window_slots = (slots,) * (self.loops - 1)
            self._step = {}
        self.meta = AttentionMetadata(
            cu_seqlens_q=torch.arange(0, b * t + 1, t, device=dev),
            seq_lens=torch.full((b,), end, device=dev),
            block_tables=self._tables,
            slots=(rows + pos).reshape(-1),
            window_tables=window_tables,
            window_slots=window_slots,
        )
        return pos.repeat(b)

    def caches(self, layer: int, loop: int) -> tuple[torch.Tensor, torch.Tensor]:
        if loop == 0:
            return self.k[layer], self.v[layer]
        key = (loop, layer)
        if key not in self._step:
            self._step[key] = self._window_caches(loop, layer)
        return self._step[key]

    def _window_caches(self, loop: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This forward's window cache of (loop, layer), holding the kept keys; the new
        tokens' K/V are written into it by the attention."""
        b, kvh, d = self.batch, self.k.shape[3], self.k.shape[4]
        n = self.meta.window_slots[loop - 1].shape[0] // b + self.length - self._window_origin
        size = -(-n // BLOCK) * BLOCK
        k = torch.zeros(b, size, kvh, d, dtype=self.k.dtype, device=self.device)
        v = torch.zeros_like(k)
        held = self.windows[loop - 1][layer]
        if held is not None:
            lo = self.length - held[0].shape[1] - self._window_origin
            k[:, lo : lo + held[0].shape[1]] = held[0]
            v[:, lo : lo + held[1].shape[1]] = held[1]
        return k.view(-1, BLOCK, kvh, d), v.view(-1, BLOCK, kvh, d)

    def advance(self, n: int) -> None:
        """After a forward of n tokens: keep the last W-1 keys of every window."""
        end = self.length + n
        keep = min(self.window, end)
        b = self.batch
        for (loop, layer), (k, v) in self._step.items():
            lo = end - keep - self._window_origin
            k = k.view(b, -1, *k.shape[2:])
            v = v.view(b, -1, *v.shape[2:])
            self.windows[loop - 1][layer] = (
                (k[:, lo : lo + keep].clone(), v[:, lo : lo + keep].clone()) if keep else None
            )
        self._step = {}
        self.length = end

    def window_bytes(self) -> int:
        return sum(
            w[0].numel() * w[0].element_size() * 2 for loop in self.windows for w in loop if w is not None
        )
