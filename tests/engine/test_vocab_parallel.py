"""The vocabulary-parallel LM head's sampling (engine/model/vocab_parallel.py) on real gloo
ranks: every rank, holding only its shard of the logits, must pick exactly the token one
rank picks from the whole rows — greedy ties to the lowest id, banned stop ids, temperature
draws with the same seeds, top-k and top-p — also when the ranks do not divide the vocabulary.
"""

from __future__ import annotations

import pickle
import socket

import pytest
import torch
import torch.multiprocessing as mp

from loopls.engine.model.sampler import sample_rows
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.vocab_parallel import (
    VocabShard, ban_, gather_logits, kth_largest, shard_argmax, shard_logits,
)

VOCAB, HIDDEN, ROWS, DRAWS = 10, 6, 8, 30
PARAMS = [
    SamplingParams(),
    SamplingParams(temperature=0.7, seed=1),
    SamplingParams(temperature=1.0, top_k=3, seed=2),
    SamplingParams(temperature=2.0, top_k=7, seed=3),
    SamplingParams(temperature=1.3, seed=4),
    SamplingParams(temperature=1.0, top_k=1, seed=5),
    SamplingParams(),
    SamplingParams(temperature=0.5, top_k=VOCAB + 5, seed=6),
]
TOP_P = [SamplingParams(temperature=1.0, top_p=0.6, seed=7), SamplingParams(temperature=0.8, top_k=4, seed=8)]


def _ties() -> torch.Tensor:
    """Rows whose maximum is shared: across shards, inside one, at the last id, everywhere."""
    rows = torch.zeros(ROWS, VOCAB)
    rows[0, [3, 5]] = 2.0  # ids 3 and 5 sit on different ranks at world 2 and 3
    rows[1, [5, 6]] = 2.0
    rows[2, 9] = 1.0
    rows[4, [0, 9]] = 3.0
    rows[5, [4, 8]] = -1.0
    rows[5, :4] = rows[5, 5:8] = rows[5, 9] = -2.0
    rows[6] = torch.arange(VOCAB).flip(0).float()
    rows[7, [2, 4, 8]] = 5.0
    return rows


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(ROWS, HIDDEN, generator=g), "weight": torch.randn(VOCAB, HIDDEN, generator=g),
            "ban": torch.tensor([[1, 7, -1]] * 4 + [[-1, -1, -1]] * 2 + [[3, 5, 9]] * 2)}


def _results(shard: VocabShard) -> dict:
    """What a rank computes; a world-1 shard is the whole vocabulary (the reference)."""
    inp = _inputs()
    head = shard_logits(inp["x"], shard.rows(inp["weight"]), shard)
    # The same numbers on every rank: a GEMM over fewer rows may round differently.
    logits = shard.columns(inp["x"] @ inp["weight"].T, float("-inf"))
    ties = shard.columns(_ties(), float("-inf"))
    banned = logits.clone()
    ban_(banned, inp["ban"], shard)
    gens = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in PARAMS]
    draws = [sample_rows(logits * 0.3, PARAMS, gens, shard) for _ in range(DRAWS)]
    pgens = [torch.Generator().manual_seed(p.seed) for p in TOP_P]
    nucleus = [sample_rows(logits[:2], TOP_P, pgens, shard) for _ in range(DRAWS)]
    ks = torch.tensor([1, 2, 3, 4, 5, 8, 9, 10])
    return {
        "head": head, "greedy_ties": shard_argmax(ties, shard), "greedy": shard_argmax(logits, shard),
        "banned": shard_argmax(banned, shard), "whole": gather_logits(banned, shard),
        "kth": kth_largest(logits, ks, VOCAB, shard), "draws": torch.stack(draws), "nucleus": torch.stack(nucleus),
    }


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = _results(VocabShard(VOCAB, rank, world))
        with open(f"{out}.{rank}", "wb") as f:
            pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world", [2, 3])  # 3 ranks: shards of 4, 4 and 2 ids, the last padded
def test_every_rank_samples_what_one_rank_samples(tmp_path, world: int) -> None:
    out = str(tmp_path / "rank")
    mp.start_processes(_worker, args=(world, _free_port(), out), nprocs=world, join=True, start_method="spawn")
    one = _results(VocabShard(VOCAB))
    assert one["greedy_ties"].tolist() == [3, 5, 9, 0, 0, 4, 0, 2]  # the lowest id of a shared maximum
    assert (one["banned"] != one["greedy"]).any()  # the bans changed some rows' choice
    assert all(one["banned"][r].item() not in (1, 7) for r in range(4))
    assert len(set(one["draws"][:, 4].tolist())) > 3  # temperature rows really draw
    for rank in range(world):
        with open(f"{out}.{rank}", "rb") as f:
            got = pickle.load(f)
        for key in ("greedy_ties", "greedy", "banned", "draws", "nucleus"):
            assert torch.equal(got[key], one[key]), (rank, key)
        assert torch.equal(got["whole"], one["whole"]) and torch.equal(got["kth"], one["kth"])
        shard = VocabShard(VOCAB, rank, world)
        torch.testing.assert_close(got["head"], shard.columns(one["head"], float("-inf")), rtol=0, atol=1e-5)


def test_the_gumbel_draw_follows_the_distribution() -> None:
    """argmax(logits / T - log E) picks token i with probability softmax(logits / T)_i."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 1.5]]).repeat(40_000, 1)
    params = SamplingParams(temperature=0.8)
    tokens = sample_rows(logits, [params] * len(logits), [torch.Generator().manual_seed(9)] * len(logits))
    freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
    expected = (logits[0] / 0.8).softmax(-1)
    assert (freq - expected).abs().max() < 0.01, (freq, expected)
    top_k = sample_rows(logits, [SamplingParams(temperature=0.8, top_k=2)] * len(logits), [None] * len(logits))
    two = (logits[0, [0, 4]] / 0.8).softmax(-1)
    assert set(top_k.tolist()) == {0, 4}
    assert abs((top_k == 0).float().mean() - two[0]) < 0.01

