"""GPU executors fuse each layer's q/k/v projections into one GEMM (engine/model/layers.py,
`FusedLinear`); the model must compute what it computed before."""

from __future__ import annotations

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
