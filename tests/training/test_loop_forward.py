"""The training forward equals the engine's inference forward on the same weights (fp32, CPU).

The engine's forward (KV cache, loop windows) is itself proven against a naive Loop reference
in tests/engine/test_loop_reference.py, so equality here means training optimises exactly
the model loopls runs."""

from __future__ import annotations

import pytest
import torch

from loopls.engine.model.cache import KVCache
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.tiny import create_tiny
from training.loop_forward import logits, loss, window_attention

ATOL = 2e-5


def _engine_logits(lm, ids: torch.Tensor) -> torch.Tensor:
    cache = KVCache.for_model(lm.model, batch=ids.shape[0], capacity=ids.shape[1], dtype=torch.float32)
    with torch.no_grad():
        return lm.model(ids, cache)


@pytest.mark.parametrize("window,kv_heads,loops,length", [(4, 2, 2, 23), (8, 1, 2, 40), (5, 4, 3, 17), (16, 2, 2, 9)])
def test_training_logits_equal_engine_logits(tmp_path, window, kv_heads, loops, length):
    folder = create_tiny(tmp_path / "m", "iquestloopcoder", seed=3, overrides={
        "loop_window_size": window, "num_key_value_heads": kv_heads, "loop_num": loops})
    lm = load_checkpoint(folder, dtype="float32")
    ids = torch.randint(0, lm.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(window))
    with torch.no_grad():
        ours = logits(lm.model, ids)
    ref = _engine_logits(lm, ids)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-4)


def test_a_window_off_by_one_would_be_caught(tmp_path):
    """The comparison can fail: the same weights with a window of W+1 keys differ."""
    ids = torch.randint(0, 500, (1, 20), generator=torch.Generator().manual_seed(0))
    lms = [load_checkpoint(create_tiny(tmp_path / str(w), "iquestloopcoder", seed=1,
                                       overrides={"loop_window_size": w}), dtype="float32") for w in (4, 5)]
    assert torch.equal(lms[0].model.model.layers[0].self_attn.q_proj.weight,
                       lms[1].model.model.layers[0].self_attn.q_proj.weight)
    with torch.no_grad():
        wide = logits(lms[1].model, ids)
    assert not torch.allclose(wide, _engine_logits(lms[0], ids), atol=ATOL)


def test_window_attention_matches_a_dense_mask():
    q, k, v = torch.randn(2, 4, 37, 8), torch.randn(2, 4, 37, 8), torch.randn(2, 4, 37, 8)
    i = torch.arange(37)
    diff = i[:, None] - i[None, :]
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=(diff >= 0) & (diff < 6))
    torch.testing.assert_close(window_attention(q, k, v, 6), dense, atol=1e-6, rtol=1e-5)


def test_loss_ignores_padding_and_has_gradients(tmp_path):
    folder = create_tiny(tmp_path / "m", "iquestloopcoder", seed=2)
    lm = load_checkpoint(folder, dtype="float32")
    model = lm.model.requires_grad_(True)
    ids = torch.randint(0, lm.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = torch.roll(ids, -1, 1)
    labels[:, -3:] = -100
    value, count = loss(model, ids, labels)
    assert count == 2 * 9
    ref = torch.nn.functional.cross_entropy(logits(model, ids)[:, :9].flatten(0, 1), labels[:, :9].flatten())
    torch.testing.assert_close(value, ref)
    value.backward()
    assert model.model.gate_projections[0].weight.grad.abs().sum() > 0
