"""Argument checks of the kernel entry points (ops.py): shapes, dtypes, devices, strides.

Every check reads tensor metadata only, never values, so it costs no host sync and works
inside CUDA-graph capture. A failed check raises ValueError naming the argument.
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_dims(name: str, t: torch.Tensor, dims: int, shape_doc: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor {shape_doc}, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"{name} must be {shape_doc}, got shape {tuple(t.shape)}")


def check_float(name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")


def check_index(name: str, t: torch.Tensor) -> None:
    if t.dtype not in INDEX_DTYPES:
        raise ValueError(f"{name} must be int32 or int64, got {t.dtype}")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"all tensors must be on one device: {listed}")


def check_last_contiguous(name: str, t: torch.Tensor) -> None:
    # The kernels address rows by stride and read each row as one contiguous vector.
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dimension (stride {t.stride()})")


def check_cache(name: str, cache: torch.Tensor, kv_heads: int | None, head_dim: int) -> None:
    check_dims(name, cache, 4, "[num_blocks, block_size, KVH, D]")
    check_last_contiguous(name, cache)
    if kv_heads is not None and cache.shape[2] != kv_heads:
        raise ValueError(f"{name} has {cache.shape[2]} KV heads, expected {kv_heads}")
    if cache.shape[3] != head_dim:
        raise ValueError(f"{name} has head_dim {cache.shape[3]}, the queries {head_dim}")


def check_out(out: torch.Tensor | None, like: torch.Tensor) -> None:
    if out is None:
        return
    if not isinstance(out, torch.Tensor) or out.shape != like.shape or out.dtype != like.dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"out must be a {tuple(like.shape)} {like.dtype} tensor, got {got}")
    if out.device != like.device:
        raise ValueError(f"out is on {out.device}, the inputs on {like.device}")
    check_last_contiguous("out", out)


def check_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    window: int,
    out: torch.Tensor | None,
) -> None:
    """The paged layout of reference.py: q [N, H, D], caches [num_blocks, block_size, KVH, D]."""
    check_dims("q", q, 3, "[N, H, D]")
    check_float("q", q)
    check_last_contiguous("q", q)
    check_cache("k_cache", k_cache, None, q.shape[2])
    check_cache("v_cache", v_cache, k_cache.shape[2], q.shape[2])
    if v_cache.shape[:2] != k_cache.shape[:2]:
        raise ValueError(f"v_cache {tuple(v_cache.shape)} does not match k_cache {tuple(k_cache.shape)}")
    if k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise ValueError(f"q, k_cache and v_cache must share a dtype: {q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    if q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k_cache.shape[2]} KV heads")
    check_dims("block_tables", block_tables, 2, "[B, max_blocks]")
    check_index("block_tables", block_tables)
    check_dims("cu_seqlens_q", cu_seqlens_q, 1, "[B + 1]")
    check_index("cu_seqlens_q", cu_seqlens_q)
    check_dims("seq_lens", seq_lens, 1, "[B]")
    check_index("seq_lens", seq_lens)
    b = block_tables.shape[0]
    if cu_seqlens_q.shape[0] != b + 1 or seq_lens.shape[0] != b:
        raise ValueError(
            f"block_tables has {b} rows: cu_seqlens_q needs {b + 1} entries (got "
            f"{cu_seqlens_q.shape[0]}) and seq_lens {b} (got {seq_lens.shape[0]})"
        )
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be an int >= 0 (0: no window), got {window!r}")
    check_same_device(
        q=q, k_cache=k_cache, v_cache=v_cache, block_tables=block_tables,
        cu_seqlens_q=cu_seqlens_q, seq_lens=seq_lens,
    )
    check_out(out, q)


def check_gate(gate_weight: torch.Tensor, gate_bias: torch.Tensor, q: torch.Tensor) -> None:
    check_dims("gate_weight", gate_weight, 2, "[H, D]")
    check_dims("gate_bias", gate_bias, 1, "[H]")
    if gate_weight.shape != q.shape[1:] or gate_bias.shape[0] != q.shape[1]:
        raise ValueError(
            f"gate_weight {tuple(gate_weight.shape)} / gate_bias {tuple(gate_bias.shape)} do not match "
            f"{q.shape[1]} heads of dim {q.shape[2]}"
        )
    check_float("gate_weight", gate_weight)
    check_float("gate_bias", gate_bias)
    check_last_contiguous("gate_weight", gate_weight)
    check_same_device(q=q, gate_weight=gate_weight, gate_bias=gate_bias)


def check_write_kv(k_cache, v_cache, k, v, slots) -> None:
    check_dims("k", k, 3, "[N, KVH, D]")
    check_dims("v", v, 3, "[N, KVH, D]")
    if v.shape != k.shape:
        raise ValueError(f"v {tuple(v.shape)} does not match k {tuple(k.shape)}")
    check_float("k", k)
    check_float("v", v)
    check_last_contiguous("k", k)
    check_last_contiguous("v", v)
    check_cache("k_cache", k_cache, k.shape[1], k.shape[2])
    check_cache("v_cache", v_cache, k.shape[1], k.shape[2])
    if v_cache.shape != k_cache.shape:
        raise ValueError(f"v_cache {tuple(v_cache.shape)} does not match k_cache {tuple(k_cache.shape)}")
    check_float("k_cache", k_cache)
    check_float("v_cache", v_cache)
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("k_cache and v_cache must be contiguous (slots index their flattened rows)")
    check_dims("slots", slots, 1, "[N]")
    check_index("slots", slots)
    if slots.shape[0] != k.shape[0]:
        raise ValueError(f"slots has {slots.shape[0]} entries for {k.shape[0]} new tokens")
    check_same_device(k_cache=k_cache, v_cache=v_cache, k=k, v=v, slots=slots)


def check_norm(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None = None) -> None:
    if x.dim() < 1:
        raise ValueError("x must have at least one dimension")
    check_float("x", x)
    check_last_contiguous("x", x)
    check_dims("weight", weight, 1, f"[{x.shape[-1]}]")
    check_float("weight", weight)
    if weight.shape[0] != x.shape[-1]:
        raise ValueError(f"weight has {weight.shape[0]} entries, x rows {x.shape[-1]}")
    tensors = {"x": x, "weight": weight}
    if residual is not None:
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise ValueError(
                f"residual {tuple(residual.shape)} {residual.dtype} must match x {tuple(x.shape)} {x.dtype}"
            )
        check_last_contiguous("residual", residual)
        tensors["residual"] = residual
    check_same_device(**tensors)


def check_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    check_dims("x", x, 3, "[N, H, D]")
    check_float("x", x)
    check_last_contiguous("x", x)
    if x.shape[2] % 2:
        raise ValueError(f"rotate-half RoPE needs an even head_dim, got {x.shape[2]}")
    for name, t in (("cos", cos), ("sin", sin)):
        check_dims(name, t, 2, f"[N, D] = [{x.shape[0]}, {x.shape[2]}]")
        if t.shape != (x.shape[0], x.shape[2]):
            raise ValueError(f"{name} must be [N, D] = [{x.shape[0]}, {x.shape[2]}], got {tuple(t.shape)}")
        check_float(name, t)
        check_last_contiguous(name, t)
    check_same_device(x=x, cos=cos, sin=sin)
