"""The schedule and initialisation of the recipe."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from loopls.engine.model.transformer import CausalLM
from training.recipe import SMALL, TINY
from training.trainer import init_weights, phases


def test_phases_share_the_time_and_one_cosine_runs_through_pretraining() -> None:
    plan = phases(SMALL)
    assert [p.name for p in plan] == ["short", "long", "fim"]
    assert sum(p.seconds for p in plan) == pytest.approx(SMALL.train_seconds)
    assert plan[2].seconds == pytest.approx(SMALL.train_seconds * SMALL.fim_share)
    short, long, fim = plan
    short.steps, long.steps, fim.steps = 1000, 200, 300
    assert short.learning_rate(0) == pytest.approx(SMALL.lr / SMALL.warmup_steps)
    assert short.learning_rate(SMALL.warmup_steps) == pytest.approx(SMALL.lr, rel=0.03)
    assert short.learning_rate(1000) == pytest.approx(long.learning_rate(0))  # no jump between phases
    assert long.learning_rate(200) == pytest.approx(SMALL.lr * SMALL.min_lr_ratio)
    assert fim.learning_rate(SMALL.fim_warmup_steps) == pytest.approx(SMALL.fim_lr, rel=0.03)
    assert fim.middle_only and not short.middle_only


def test_a_continuation_gets_the_time_of_its_phases_alone() -> None:
    (fim,) = phases(dataclasses.replace(SMALL, train_seconds=75.0), ("fim",))
    assert fim.seconds == pytest.approx(75.0)


def test_init_is_seeded_and_gates_start_neutral() -> None:
    config = TINY.model_config([2], 1)
    a, b, c = CausalLM(config), CausalLM(config), CausalLM(config)
    init_weights(a, 0), init_weights(b, 0), init_weights(c, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert all(float(p.detach().abs().sum()) == 0 for n, p in a.named_parameters() if "gate_projections" in n)
