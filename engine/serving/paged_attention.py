"""Plain-torch paged attention: a packed multi-sequence forward over a block pool.

Layout. `KVPool` holds, per layer, K and V for every token slot of every block:
`k[layer]` is [num_blocks * block_size, KVH, D]; token position p of a sequence lives in slot
`block_table[p // bs] * bs + p % bs`. Only loop 0 writes here (the global cache).

The later loops of an `iquestloopcoder` model keep no blocks at all: each sequence owns a
`LoopWindow` holding the last W-1 keys/values per (loop, layer) — with the current token that
is the W keys the causal window sees. So memory is one paged cache plus a W-token window per
live sequence, never two full caches.

A step packs every scheduled sequence's new tokens into one [1, N] row, so the projections
and MLPs (the heavy part on a CPU) run once for the whole batch; attention is then done per
sequence over K/V gathered from its blocks. Tokens before `write_from` are a replay (their
K/V already sit in the blocks, e.g. shared prefix-cache blocks): they are recomputed to
rebuild the window but their K/V are not written again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from ..model.config import ModelConfig
from ..model.transformer import attend_masked, rope_cos_sin


class KVPool:
    """The tensors behind a `blocks.BlockPool` of the same geometry."""

    def __init__(
        self,
        config: ModelConfig,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (config.num_hidden_layers, num_blocks * block_size, config.num_key_value_heads, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # [L, slots, KVH, D]
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size

    def slots(self, block_table: list[int], start: int, end: int, device: torch.device) -> torch.Tensor:
        """Slot index of every position in [start, end) -> [end - start] int64."""
        bs = self.block_size
        table = torch.tensor(block_table, dtype=torch.int64, device=device)
        pos = torch.arange(start, end, device=device)
        return table[pos // bs] * bs + pos % bs

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class LoopWindow:
    """Last W-1 keys/values of every later loop and layer for one sequence.

    A forward appends the new tokens (`extend`); the caller then `commit`s the position the
    sequence really reached, which trims the window to the W-1 keys before it and so also
    rolls back rejected speculative tokens.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.keep = max(config.loop_window_size - 1, 0)
        loops, layers = max(config.loop_num - 1, 0), config.num_hidden_layers
        self.k: list[list[torch.Tensor | None]] = [[None] * layers for _ in range(loops)]
        self.v: list[list[torch.Tensor | None]] = [[None] * layers for _ in range(loops)]
        self.end = 0  # position after the last held key

    def extend(
        self, loop: int, layer: int, k: torch.Tensor, v: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Held K/V followed by the new tokens' k/v [1, KVH, T, D], and the first key's
        position. The held keys must end right before `start`."""
        held_k, held_v = self.k[loop - 1][layer], self.v[loop - 1][layer]
        if held_k is None or held_k.shape[2] == 0:
            k_all, v_all, first = k, v, start
        else:
            if self.end != start:
                raise RuntimeError(f"loop window ends at {self.end}, chunk starts at {start}")
            k_all, v_all = torch.cat((held_k, k), dim=2), torch.cat((held_v, v), dim=2)
            first = start - held_k.shape[2]
        self.k[loop - 1][layer], self.v[loop - 1][layer] = k_all, v_all
        return k_all, v_all, first

    def commit(self, end: int, forward_end: int) -> None:
        """After a forward that reached `forward_end`, keep the W-1 keys before `end`."""
        for loop_k, loop_v in zip(self.k, self.v):
            for i, (k, v) in enumerate(zip(loop_k, loop_v)):
                if k is None:
                    continue
                first = forward_end - k.shape[2]
                lo = max(first, end - self.keep)
                loop_k[i] = k[:, :, lo - first : end - first].clone()
                loop_v[i] = v[:, :, lo - first : end - first].clone()
        self.end = end

    def nbytes(self) -> int:
        return sum(2 * k.numel() * k.element_size() for loop in self.k for k in loop if k is not None)


@dataclass
class SeqChunk:
    """One sequence's share of a step."""

    token_ids: list[int]
    start: int  # position of token_ids[0]
    write_from: int  # positions below this already have loop-0 K/V in the blocks
    block_table: list[int]
    window: LoopWindow | None
    logits_from: int  # logits are returned for token_ids[logits_from:] (may be empty)


def tail_tokens(config: ModelConfig) -> int:
    """Tokens to replay after a prefix-cache hit so that the later loops' windows are exact.

    Loop 1's K/V at a position depend on loop 0's output there; but each layer's local
    attention reaches W-1 positions further back, so layer L-1's window keys depend on
    L*(W-1) positions of loop-0 output. Replaying that many tokens rebuilds the window
    exactly; the loop-0 K/V of those tokens are read from the cache, not written again.
    """
    if not config.is_loop or config.loop_num < 2:
        return 0
    return config.num_hidden_layers * max(config.loop_window_size - 1, 0)


@torch.inference_mode()
def paged_forward(model, chunks: list[SeqChunk], pool: KVPool) -> list[torch.Tensor]:
    """Run `model` (a CausalLM) over every chunk's new tokens; per chunk, fp32 logits
    [len(token_ids) - logits_from, vocab]. Loop windows are left extended: the caller
    commits each one to the position its sequence really reached."""
    cfg: ModelConfig = model.config
    device = pool.k.device
    ids = torch.tensor([t for c in chunks for t in c.token_ids], device=device)[None]
    positions = torch.cat([torch.arange(c.start, c.start + len(c.token_ids), device=device) for c in chunks])
    h = model.model.embed_tokens(ids)  # [1, N, hidden]
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, h.dtype)
    plan = _plan(chunks, pool, device)
    batch = _batch(plan, device)
    for loop in range(cfg.loop_num):
        for i, layer in enumerate(model.model.layers):
            q, k, v = layer.self_attn.qkv(layer.input_layernorm(h), cos, sin)
            if loop == 0:
                _write(pool, i, k, v, plan)
            o = _attend_all(model, pool, loop, i, q, k, v, chunks, plan, batch)
            h = h + layer.self_attn.project_out(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
    rows = torch.cat([p.logit_rows for p in plan])
    logits = F.linear(model.model.norm(h[0, rows]), model.output_weight()).float()
    return list(logits.split([len(p.logit_rows) for p in plan]))


@dataclass
class _SeqPlan:
    lo: int  # offset of the chunk in the packed row
    hi: int
    read_slots: torch.Tensor  # slots of positions [0, end)
    write_rows: torch.Tensor  # packed rows whose K/V are written
    write_slots: torch.Tensor
    positions: torch.Tensor
    logit_rows: torch.Tensor


def _plan(chunks: list[SeqChunk], pool: KVPool, device: torch.device) -> list[_SeqPlan]:
    plans, lo = [], 0
    for c in chunks:
        n = len(c.token_ids)
        end = c.start + n
        first_write = min(max(c.write_from, c.start), end)
        plans.append(_SeqPlan(
            lo=lo,
            hi=lo + n,
            read_slots=pool.slots(c.block_table, 0, end, device),
            write_rows=torch.arange(lo + first_write - c.start, lo + n, device=device),
            write_slots=pool.slots(c.block_table, first_write, end, device),
            positions=torch.arange(c.start, end, device=device),
            logit_rows=torch.arange(lo + c.logits_from, lo + n, device=device),
        ))
        lo += n
    return plans


def _write(pool: KVPool, layer: int, k: torch.Tensor, v: torch.Tensor, plan: list[_SeqPlan]) -> None:
    """Scatter the new tokens' loop-0 K/V (k, v [1, KVH, N, D]) into their slots."""
    rows = torch.cat([p.write_rows for p in plan])
    slots = torch.cat([p.write_slots for p in plan])
    if rows.numel():
        pool.k[layer].index_copy_(0, slots, k[0, :, rows].transpose(0, 1))
        pool.v[layer].index_copy_(0, slots, v[0, :, rows].transpose(0, 1))


@dataclass
class _Batch:
    """The step's sequences padded to one batch, shared by every layer and loop."""

    rows: torch.Tensor  # [B, T] packed row of each (sequence, query); padding -> row 0
    unpad: torch.Tensor  # [N] index into the flattened [B * T] queries, in packed order
    positions: torch.Tensor  # [B, T] query positions; padding -> 0
    slots: torch.Tensor  # [B, S] block slot of each key position; padding -> slot 0
    global_mask: torch.Tensor  # [B, T, S] causal and within the sequence


def _batch(plan: list[_SeqPlan], device: torch.device) -> _Batch:
    lengths = [p.hi - p.lo for p in plan]
    t = max(lengths)
    rows = pad_sequence([torch.arange(p.lo, p.hi, device=device) for p in plan], batch_first=True)
    positions = pad_sequence([p.positions for p in plan], batch_first=True)
    slots = pad_sequence([p.read_slots for p in plan], batch_first=True)
    ends = torch.tensor([len(p.read_slots) for p in plan], device=device)
    k_pos = torch.arange(slots.shape[1], device=device)
    # A padding query sits at position 0 and so sees key 0: no row is fully masked (NaN).
    mask = (k_pos[None, None, :] <= positions[:, :, None]) & (k_pos[None, None, :] < ends[:, None, None])
    unpad = torch.cat([torch.arange(n, device=device) + b * t for b, n in enumerate(lengths)])
    return _Batch(rows, unpad, positions, slots, mask)


def _pack(o: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """[B, H, T, D] padded outputs -> [1, H, N, D] in the packed token order."""
    b, h, t, d = o.shape
    return o.transpose(0, 1).reshape(h, b * t, d)[:, batch.unpad][None]


def _attend_all(model, pool: KVPool, loop: int, layer: int, q, k, v, chunks: list[SeqChunk],
                plan: list[_SeqPlan], batch: _Batch) -> torch.Tensor:
    """Attention output [1, H, N, D] for every sequence of the step in one batched call per
    kind (global over the blocks; for later loops also local over each sequence's window)."""
    b, t = batch.rows.shape
    q_pad = q[0][:, batch.rows.reshape(-1)].reshape(q.shape[1], b, t, -1).transpose(0, 1)  # [B, H, T, D]
    # [B, S, KVH, D] -> [B, KVH, S, D]: every position so far, read back from the blocks.
    k_glob = pool.k[layer][batch.slots].transpose(1, 2)
    v_glob = pool.v[layer][batch.slots].transpose(1, 2)
    glob = _pack(attend_masked(q_pad, k_glob, v_glob, batch.global_mask), batch)
    if loop == 0:
        return glob
    k_loc, v_loc, first = [], [], []
    for c, p in zip(chunks, plan):
        kw, vw, f = c.window.extend(loop, layer, k[:, :, p.lo : p.hi], v[:, :, p.lo : p.hi], c.start)
        k_loc.append(kw[0].transpose(0, 1))  # [L, KVH, D]
        v_loc.append(vw[0].transpose(0, 1))
        first.append(f)
    k_loc = pad_sequence(k_loc, batch_first=True).transpose(1, 2)  # [B, KVH, Lmax, D]
    v_loc = pad_sequence(v_loc, batch_first=True).transpose(1, 2)
    loc_pos = torch.tensor(first, device=q.device)[:, None] + torch.arange(k_loc.shape[2], device=q.device)[None]
    held = torch.tensor([p.hi - p.lo + c.start - f for c, p, f in zip(chunks, plan, first)], device=q.device)
    diff = batch.positions[:, :, None] - loc_pos[:, None, :]  # [B, T, Lmax]
    in_seq = torch.arange(k_loc.shape[2], device=q.device)[None, None, :] < held[:, None, None]
    local_mask = (diff >= 0) & (diff < model.config.loop_window_size) & in_seq
    local_mask |= ~local_mask.any(-1, keepdim=True) & (torch.arange(k_loc.shape[2], device=q.device) == 0)
    local = _pack(attend_masked(q_pad, k_loc, v_loc, local_mask), batch)
    g = model.model.gate_projections[layer](q)
    return g * glob + (1 - g) * local
