"""K/V write, RMSNorm(+residual) and RoPE kernels against their references; the references
against the engine's layer math, bit for bit in fp32."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import ON_GPU, ROW_DTYPES, rel_err

from loopls.kernels import reference

# The row kernels round like the reference; a few ulps apart at most.
ROW_BOUNDS = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def assert_same_rounding(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Bit-equal where the kernel rounds as torch does. Triton's interpreter truncates
    fp32 -> bf16 (the GPU rounds to nearest even), so there bf16 gets an ulp's bound."""
    if ON_GPU or got.dtype != torch.bfloat16:
        assert torch.equal(got, ref)
    else:
        assert rel_err(got, ref) < ROW_BOUNDS[torch.bfloat16]


@pytest.mark.parametrize("cache_dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("block_size,kv_heads,head_dim", [(16, 8, 128), (32, 2, 64), (8, 5, 64)])
def test_write_kv_matches_reference(kernels, device, generator, cache_dtype, block_size, kv_heads, head_dim) -> None:
    num_blocks, n = 6, 21
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=generator).to(cache_dtype).to(device)
    v_cache = torch.randn(shape, generator=generator).to(cache_dtype).to(device)
    slots = torch.randperm(num_blocks * block_size, generator=generator)[:n]
    slots[[3, 11]] = -1  # padding rows of a graph batch
    slots = slots.to(torch.int32).to(device)
    # new K/V arrive in fp32 and as a strided view (rows of a fused qkv projection)
    k = torch.randn(n, kv_heads, 2 * head_dim, generator=generator).to(device)[..., :head_dim]
    v = torch.randn(n, kv_heads, head_dim, generator=generator).to(device)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    reference.write_kv(ref_k, ref_v, k, v, slots)
    kernels.kv_write.write_kv(k_cache, v_cache, k, v, slots)
    assert_same_rounding(k_cache, ref_k)
    assert_same_rounding(v_cache, ref_v)


@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("rows,hidden", [(1, 5120), (7, 256), (33, 320)])
def test_rms_norm_matches_reference(kernels, device, generator, dtype, rows, hidden) -> None:
    x = (torch.randn(rows, hidden, generator=generator) * 3).to(dtype).to(device)
    w = (1 + 0.1 * torch.randn(hidden, generator=generator)).to(dtype).to(device)
    got = kernels.norms.rms_norm(x, w, 1e-5)
    ref = reference.rms_norm(x.float(), w.float(), 1e-5)
    assert got.dtype == dtype and got.shape == x.shape
    assert rel_err(got, ref) < ROW_BOUNDS[dtype]


@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
def test_add_rms_norm_matches_reference(kernels, device, generator, dtype) -> None:
    x = torch.randn(2, 5, 384, generator=generator).to(dtype).to(device)
    res = (torch.randn(2, 5, 384, generator=generator) * 4).to(dtype).to(device)
    w = torch.randn(384, generator=generator).to(dtype).to(device)
    normed, h = kernels.norms.add_rms_norm(x, res, w, 1e-6)
    ref_normed, ref_h = reference.add_rms_norm(x, res, w, 1e-6)
    assert_same_rounding(h, ref_h)  # the residual sum is one rounding in both
    assert rel_err(normed, reference.rms_norm(ref_h.float(), w.float(), 1e-6)) < ROW_BOUNDS[dtype]
    assert rel_err(normed, ref_normed) < ROW_BOUNDS[dtype]


@pytest.mark.parametrize("dtype", ROW_DTYPES, ids=str)
@pytest.mark.parametrize("tokens,heads,head_dim", [(1, 40, 128), (9, 8, 128), (17, 10, 64)])
def test_rope_matches_reference(kernels, device, generator, dtype, tokens, heads, head_dim) -> None:
    from loopls.engine.model.transformer import rope_cos_sin

    positions = torch.randint(0, 131_072, (tokens,), generator=generator)
    cos, sin = rope_cos_sin(positions, head_dim, 500_000.0, dtype)
    # queries as the projection leaves them: a strided view of [N, H * D]
    x = torch.randn(tokens, heads * head_dim + 8, generator=generator)[:, :heads * head_dim]
    x = x.view(tokens, heads, head_dim).to(dtype).to(device)
    got = kernels.rope.apply_rope(x, cos.to(device), sin.to(device))
    ref = reference.apply_rope(x.float(), cos.float().to(device), sin.float().to(device))
    assert rel_err(got, ref) < ROW_BOUNDS[dtype]


def test_references_are_the_checkpoints_math_bit_for_bit(generator) -> None:
    """The references are what the engine runs on the CPU: they must be the Llama checkpoints'
    own formulas (written out here independently) exactly, in fp32."""
    from loopls.engine.model.transformer import rope_cos_sin

    x = torch.randn(3, 7, 256, generator=generator) * 2
    w = torch.randn(256, generator=generator)

    def rms(h: torch.Tensor) -> torch.Tensor:  # normalise in fp32, cast, scale in the model dtype
        hf = h.float()
        return w * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(h.dtype)

    assert torch.equal(reference.rms_norm(x, w, 1e-5), rms(x))
    o = torch.randn(3, 7, 256, generator=generator)
    normed, h = reference.add_rms_norm(o, x, w, 1e-5)
    assert torch.equal(h, x + o) and torch.equal(normed, rms(x + o))
    q = torch.randn(6, 10, 64, generator=generator)  # packed [N, H, D]
    cos, sin = rope_cos_sin(torch.arange(100, 106), 64, 500_000.0, torch.float32)
    rotated = torch.cat((-q[..., 32:], q[..., :32]), dim=-1)  # rotate-half
    assert torch.equal(reference.apply_rope(q, cos, sin), q * cos[:, None] + rotated * sin[:, None])