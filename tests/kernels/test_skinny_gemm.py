"""The decode GEMM (kernels/skinny_gemm.py) against torch, and the per-shape choice between it
and cuBLAS (kernels/decode_gemm.py). Small shapes run in Triton's interpreter on a CPU; on a
GPU the 14B and 40B shapes at TP=1 and TP=2 widths run in bf16."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from kernel_cases import BOUNDS, ON_GPU, rel_err

gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
# The interpreter has no bfloat16 arithmetic (kernel_cases.py): float16 and float32 there.
DTYPES = (torch.bfloat16, torch.float16) if ON_GPU else (torch.float16, torch.float32)


@pytest.fixture(scope="module")
def sk(kernels):  # noqa: ARG001 - `kernels` checks that triton runs here (compiled or interpreted)
    return importlib.import_module("loopls.kernels.skinny_gemm")


def _cases(generator, rows, n, k, dtype, device):
    x = torch.randn(rows, k, generator=generator).to(dtype).to(device)
    w = torch.randn(n, k, generator=generator).mul(k**-0.5).to(dtype).to(device)
    up = torch.randn(n, k, generator=generator).mul(k**-0.5).to(dtype).to(device)
    return x, w, up


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows", [1, 3, 16, 20])
@pytest.mark.parametrize(("n", "k"), [(40, 96), (64, 256)])
@pytest.mark.parametrize("split", [1, 2, 3])
def test_skinny_gemm_matches_torch(sk, device, generator, dtype, rows, n, k, split) -> None:
    # Ragged N and K (not multiples of the blocks) and splits whose K share is uneven.
    x, w, _ = _cases(generator, rows, n, k, dtype, device)
    workspace = sk.Workspace.create(x.device, sk.MAX_ROWS, 64, 4)
    config = sk.GemmConfig(16, 32, split, 4, 2)
    ref = x.float() @ w.float().t()
    out = sk.skinny_gemm(x, w, config, workspace=workspace)
    assert out.dtype == dtype and out.shape == (rows, n)
    assert rel_err(out, ref) < BOUNDS[dtype]
    # The counters are back at zero: a second launch (a graph replay) gives the same bits.
    assert int(workspace.counters.abs().sum()) == 0
    assert torch.equal(sk.skinny_gemm(x, w, config, workspace=workspace), out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows", [1, 5, 17])
def test_gated_gemm_is_silu_gate_times_up(sk, device, generator, dtype, rows) -> None:
    x, gate, up = _cases(generator, rows, 48, 160, dtype, device)
    ref = F.silu(x.float() @ gate.float().t()) * (x.float() @ up.float().t())
    out = sk.skinny_gemm(x, gate, sk.GemmConfig(16, 64, 1, 4, 2), up=up)
    assert rel_err(out, ref) < 2 * BOUNDS[dtype]


def test_out_lands_in_a_given_view(sk, device, generator) -> None:
    # The all-reduce writes the product into a view of its symmetric buffer.
    x, w, _ = _cases(generator, 4, 48, 64, torch.float32, device)
    buf = torch.full((4 * 48 + 10,), 7.0, device=x.device)
    part = buf.narrow(0, 0, 4 * 48).view(4, 48)
    got = sk.skinny_gemm(x, w, sk.GemmConfig(16, 32, 1, 4, 2), out=part)
    assert got.data_ptr() == part.data_ptr()
    assert rel_err(part, x @ w.t()) < BOUNDS[torch.float32]
    assert bool((buf[4 * 48 :] == 7.0).all())


def test_bad_requests_fail_clearly(sk, device, generator) -> None:
    x, w, up = _cases(generator, 2, 32, 64, torch.float32, device)
    with pytest.raises(ValueError, match="split-K"):
        sk.skinny_gemm(x, w, sk.GemmConfig(16, 32, 2, 4, 2), up=up)
    with pytest.raises(ValueError, match="workspace"):
        sk.skinny_gemm(x, w, sk.GemmConfig(16, 32, 2, 4, 2))


# 14B / 40B (hidden 5120, intermediate 27648, 40 heads, 8 KV heads, head_dim 128): fused q/k/v,
# o_proj, gate (and up), down_proj, at TP=1 and TP=2 widths, and the LM head's TP=2 shard.
REAL_SHAPES = [(7168, 5120), (5120, 5120), (27648, 5120), (5120, 27648),
               (3584, 5120), (5120, 2560), (13824, 5120), (5120, 13824), (38400, 5120)]


@gpu
@pytest.mark.parametrize(("n", "k"), REAL_SHAPES)
def test_every_config_matches_torch_at_the_model_shapes(sk, generator, n, k) -> None:
    device = torch.device("cuda")
    workspace = sk.Workspace.create(device, sk.MAX_ROWS, n, 4)
    for rows in (1, 8, 32):
        x, w, _ = _cases(generator, rows, n, k, torch.bfloat16, device)
        ref = F.linear(x.float(), w.float())
        for config in sk.CONFIGS:
            out = sk.skinny_gemm(x, w, config, workspace=workspace)
            assert rel_err(out, ref) < BOUNDS[torch.bfloat16], (rows, config)


@gpu
def test_decode_gemm_picks_per_shape_and_stays_correct(generator) -> None:
    from loopls.kernels.decode_gemm import DecodeGemm

    device = torch.device("cuda")
    gemm = DecodeGemm(device, 13824)
    x, w, up = _cases(generator, 3, 13824, 5120, torch.bfloat16, device)
    ref = F.linear(x.float(), w.float())
    assert rel_err(gemm.linear(x, w), ref) < BOUNDS[torch.bfloat16]
    gated = F.silu(ref) * F.linear(x.float(), up.float())
    assert rel_err(gemm.gated(x, w, up), gated) < 2 * BOUNDS[torch.bfloat16]
    rows = gemm.table()
    assert {(r["kind"], r["rows"], r["n"], r["k"]) for r in rows} == {("linear", 4, 13824, 5120), ("gated", 4, 13824, 5120)}
    assert all(r["cublas_us"] > 0 and r["triton_us"] > 0 for r in rows)
    # Outside decode sizes (and in fp32) it is cuBLAS, untimed.
    big = torch.randn(64, 5120, device=device, dtype=torch.bfloat16)
    assert torch.equal(gemm.linear(big, w), F.linear(big, w))
    assert len(gemm.table()) == 2


def test_decode_gemm_leaves_cpu_tensors_to_torch(generator) -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    from loopls.kernels.decode_gemm import DecodeGemm

    gemm = DecodeGemm(torch.device("cpu"), 64)
    x, w, up = _cases(generator, 2, 64, 32, torch.float32, "cpu")
    assert torch.equal(gemm.linear(x, w), F.linear(x, w))
    assert torch.equal(gemm.gated(x, w, up), F.silu(F.linear(x, w)) * F.linear(x, up))
    assert gemm.table() == []


@gpu
def test_silu_mul_rounds_as_the_torch_ops() -> None:
    """The activation after one GEMM over gate and up side by side: silu(gate) * up, rounded
    like F.silu then * in the model dtype (bf16: within one unit in the last place)."""
    from loopls.kernels.skinny_gemm import silu_mul

    gen = torch.Generator(device="cuda").manual_seed(3)
    for rows, n, dtype in ((1, 13824, torch.bfloat16), (32, 13824, torch.bfloat16), (300, 1000, torch.float32)):
        y = torch.randn(rows, 2 * n, device="cuda", generator=gen).to(dtype) * 3
        want = torch.nn.functional.silu(y[:, :n]) * y[:, n:]
        got = silu_mul(y)
        assert got.shape == (rows, n) and got.dtype == dtype
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2 ** -7, atol=1e-3)
        torch.testing.assert_close(got, want, **tol)


@gpu
def test_decode_gemm_runs_a_placed_pair_as_one_product() -> None:
    """gate and up side by side (layers.MLP.place): DecodeGemm.gated on cuBLAS (fp32: no Triton
    choice) multiplies the pair once and matches the two separate products; a cuBLASLt choice
    for a plain product computes what torch.mm does."""
    from loopls.kernels.decode_gemm import CUBLASLT, DecodeGemm, gate_up_pair

    gen = torch.Generator(device="cuda").manual_seed(4)
    pair = torch.randn(2 * 512, 256, device="cuda", generator=gen) * 256**-0.5
    gate, up = pair[:512], pair[512:]
    assert gate_up_pair(gate, up) is not None
    x = torch.randn(8, 256, device="cuda", generator=gen)
    gemm = DecodeGemm(torch.device("cuda"), 4096)
    with torch.inference_mode():
        got = gemm.gated(x, gate, up)
        want = torch.nn.functional.silu(x @ gate.t()) * (x @ up.t())
        # fp32: one GEMM over the pair and two over its halves may sum K in different orders
        # (different cuBLAS kernels), a few units in the last place; a wrong half would be O(1).
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        xb, wb = x.bfloat16(), torch.randn(5120, 256, device="cuda", generator=gen).bfloat16()
        gemm.linear(xb, wb)  # timed once: cuBLAS, cuBLASLt or Triton
        rows = gemm.table()
        assert rows and all("cublaslt_us" in r for r in rows if r["kind"] == "linear")
        # Whatever was chosen, forcing cuBLASLt computes the product (within bf16 rounding).
        key = next(iter(gemm.choices))
        gemm.choices[key] = type(gemm.choices[key])(**{**gemm.choices[key].__dict__, "config": CUBLASLT})
        torch.testing.assert_close(gemm.linear(xb, wb).float(), (xb @ wb.t()).float(), rtol=2 ** -7, atol=1e-2)
