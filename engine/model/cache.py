"""Contiguous per-sequence KV cache.

Loop 0 keeps K/V for every token (the global cache). Each later loop of a Loop model keeps
only its last `loop_window_size - 1` tokens: with the current token that is the W keys its
sliding window can see, so memory is one full cache plus a W-token window, never two full
caches.
"""

from __future__ import annotations

import torch

from .config import ModelConfig


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
        shape = (config.num_hidden_layers, batch, kvh, capacity, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, B, KVH, S, D]
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity
        self.length = 0
        self.window = max(config.loop_window_size - 1, 0)
        # windows[loop - 1][layer] = (k, v, first_position) for loops >= 1
        self.windows: list[list[tuple[torch.Tensor, torch.Tensor, int] | None]] = [
            [None] * config.num_hidden_layers for _ in range(max(config.loop_num - 1, 0))
        ]

    @classmethod
    def for_model(
        cls, model: torch.nn.Module, batch: int, capacity: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> KVCache:
        """A cache for `model` (a `CausalLM`) as built here: a tensor-parallel rank holds only its KV
        heads. Typed loosely: the model module imports this one."""
        kvh = model.model.layers[0].self_attn.num_kv_heads
        return cls(model.config, batch, capacity, dtype, device, num_kv_heads=kvh)

    def append_global(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' loop-0 K/V; return K/V of the whole sequence so far."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def global_kv(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def append_window(
        self, loop: int, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Window K/V followed by the new tokens' K/V, and the position of the first key.

        Keeps the last `window` keys for the next call.
        """
        held = self.windows[loop - 1][layer]
        if held is None:
            k_all, v_all, first = k, v, self.length
        else:
            k_all = torch.cat((held[0], k), dim=2)
            v_all = torch.cat((held[1], v), dim=2)
            first = held[2]
        keep = min(self.window, k_all.shape[2])
        end = first + k_all.shape[2]
        if keep:
            self.windows[loop - 1][layer] = (
                k_all[:, :, -keep:].clone(),
                v_all[:, :, -keep:].clone(),
                end - keep,
            )
        else:
            self.windows[loop - 1][layer] = None
        return k_all, v_all, first

    def advance(self, n: int) -> None:
        self.length += n

    def window_bytes(self) -> int:
        return sum(
            w[0].numel() * w[0].element_size() * 2 for loop in self.windows for w in loop if w is not None
        )
