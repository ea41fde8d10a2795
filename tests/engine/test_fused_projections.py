"""GPU executors fuse each layer's q/k/v projections into one GEMM (engine/model/layers.py,
`FusedLinear`); the model must compute what it computed before."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from loopls.engine.model.cache import KVCache
from loopls.engine.model.layers import fuse_projections
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny


def test_fused_projections_compute_what_the_separate_ones_compute(tmp_path) -> None:
    """The same logits with q/k/v from one GEMM, here with biases (qwen2) and on a Loop model."""
    for arch in ("qwen2", "iquestloopcoder"):
        lm = load_checkpoint(create_tiny(tmp_path / arch, arch, seed=4))
        ids = torch.randint(0, lm.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1))

        def logits() -> torch.Tensor:
            return lm.model(ids, KVCache.for_model(lm.model, 1, 24, torch.float32, lm.device))

        before = logits()
        fuse_projections(lm.model)
        fuse_projections(lm.model)  # idempotent
        attn = lm.model.model.layers[0].self_attn
        assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
        torch.testing.assert_close(logits(), before, rtol=0, atol=1e-5)


def test_decode_gemm_routing_keeps_the_model_exact(tmp_path) -> None:
    """Every projection routed through a DecodeGemm (use_decode_gemm) computes what it did: on a
    CPU (and in fp32 anywhere) the DecodeGemm hands every product to torch, so the bits stay;
    on a GPU in bf16 the per-shape choice is covered by tests/kernels/test_skinny_gemm.py."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    from loopls.engine.model.layers import decode_gemm_of, use_decode_gemm
    from loopls.kernels.decode_gemm import DecodeGemm

    lm = load_checkpoint(create_tiny(tmp_path / "loop", "iquestloopcoder", seed=5))
    ids = torch.randint(0, lm.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(2))

    def logits() -> torch.Tensor:
        return lm.model(ids, KVCache.for_model(lm.model, 1, 16, torch.float32, lm.device))

    before = logits()
    gemm = DecodeGemm(torch.device("cpu"), 64)
    use_decode_gemm(lm.model, gemm)
    assert decode_gemm_of(lm.model) is gemm
    layer = lm.model.model.layers[0]
    assert layer.self_attn.o_proj.gemm is gemm and layer.mlp.down_proj.gemm is gemm
    assert torch.equal(logits(), before)
    assert gemm.table() == []  # nothing timed: no product was a GPU decode GEMM


def test_gate_and_up_placed_side_by_side_form_one_pair(tmp_path) -> None:
    """MLP.place (what the loaders do on GPUs) puts gate's and up's weights in one [2I, H]
    allocation, in either loading order; the pair view is exactly [gate; up], the MLP computes
    what it did, and the parameters keep their names and shapes."""
    from loopls.kernels.decode_gemm import gate_up_pair

    lm = load_checkpoint(create_tiny(tmp_path / "m", "iquestcoder", seed=5))
    ids = torch.randint(0, lm.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(2))

    def logits() -> torch.Tensor:
        return lm.model(ids, KVCache.for_model(lm.model, 1, 16, torch.float32, lm.device))

    before = logits()
    names = sorted(n for n, _ in lm.model.named_parameters())
    for i, layer in enumerate(lm.model.model.layers):
        mlp = layer.mlp
        gate, up = mlp.gate_proj.weight.detach().clone(), mlp.up_proj.weight.detach().clone()
        assert gate_up_pair(mlp.gate_proj.weight, mlp.up_proj.weight) is None  # loaded apart
        order = ("gate_proj", "up_proj") if i % 2 == 0 else ("up_proj", "gate_proj")
        for attr in order:
            mlp.place(attr, gate if attr == "gate_proj" else up)
        pair = gate_up_pair(mlp.gate_proj.weight, mlp.up_proj.weight)
        assert pair is not None and pair.shape == (2 * gate.shape[0], gate.shape[1])
        assert torch.equal(pair, torch.cat([gate, up]))
    assert sorted(n for n, _ in lm.model.named_parameters()) == names
    torch.testing.assert_close(logits(), before, rtol=0, atol=0)
