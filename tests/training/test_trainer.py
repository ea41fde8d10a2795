"""The schedule and initialisation of the recipe."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from loopls.engine.model.transformer import CausalLM
from training.loop_forward import loss
from training.recipe import SMALL, TINY
from training.trainer import _optimizer, init_weights, phases


def test_phases_share_the_time_and_one_cosine_runs_through_pretraining() -> None:
    plan = phases(SMALL)
    assert [p.name for p in plan] == ["short", "long", "fim", "fim-long"]
    assert [p.group for p in plan] == ["short", "long", "fim", "fim"]  # what --phases and --compile name
    assert sum(p.seconds for p in plan) == pytest.approx(SMALL.train_seconds)
    assert plan[2].seconds + plan[3].seconds == pytest.approx(SMALL.train_seconds * SMALL.fim_share)
    assert plan[3].seconds == pytest.approx(SMALL.train_seconds * SMALL.fim_share * SMALL.fim_long_share)
    short, long, fim, fim_long = plan
    assert (fim.length, fim_long.length) == (SMALL.fim_len, SMALL.long_len)
    short.steps, long.steps, fim.steps, fim_long.steps = 1000, 200, 300, 120
    assert short.learning_rate(0) == pytest.approx(SMALL.lr / SMALL.warmup_steps)
    assert short.learning_rate(SMALL.warmup_steps) == pytest.approx(SMALL.lr, rel=0.03)
    assert short.learning_rate(1000) == pytest.approx(long.learning_rate(0))  # no jump between phases
    assert long.learning_rate(200) == pytest.approx(SMALL.lr * SMALL.min_lr_ratio)
    assert fim.learning_rate(SMALL.fim_warmup_steps) == pytest.approx(SMALL.fim_lr, rel=0.03)
    assert fim.learning_rate(300) == pytest.approx(fim_long.learning_rate(0))  # one cosine, no second warm-up
    assert fim_long.learning_rate(0) < SMALL.fim_lr  # the 8K rows come in the cosine's tail, where it ends
    assert fim_long.learning_rate(120) == pytest.approx(SMALL.lr * SMALL.min_lr_ratio)
    assert fim.middle_only and fim_long.middle_only and not short.middle_only


def test_completion_on_2k_rows_alone_when_no_share_goes_to_long_rows() -> None:
    (fim,) = phases(dataclasses.replace(SMALL, fim_long_share=0.0), ("fim",))
    fim.steps = 1000
    assert fim.length == SMALL.fim_len and fim.learning_rate(SMALL.fim_warmup_steps) == pytest.approx(SMALL.fim_lr, rel=0.03)


def test_a_continuation_gets_the_time_of_its_phases_alone() -> None:
    plan = phases(dataclasses.replace(SMALL, train_seconds=75.0), ("fim",))
    assert [p.name for p in plan] == ["fim", "fim-long"]
    assert sum(p.seconds for p in plan) == pytest.approx(75.0)


def test_init_is_seeded_and_gates_start_neutral() -> None:
    config = TINY.model_config([2], 1)
    a, b, c = CausalLM(config), CausalLM(config), CausalLM(config)
    init_weights(a, 0), init_weights(b, 0), init_weights(c, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert all(float(p.detach().abs().sum()) == 0 for n, p in a.named_parameters() if "gate_projections" in n)


def test_a_phase_sized_by_time_ends_when_its_time_is_up() -> None:
    """Refitting the step count from the latest pace never outlasts the phase's time: a phase
    whose time is already spent stops right after its calibration steps."""
    import ast
    import time

    from loopls.engine.model.models import default_model_dir
    from loopls.engine.model.tokenizer import Tokenizer
    from training import corpus
    from training.outline import outline_of
    from training.samples import SampleBuilder
    from training.trainer import CALIBRATION_STEPS, train

    text = "def scale(values, factor=2):\n    return [v * factor for v in values]\n\n\nclass Box:\n    pass\n"
    files = [corpus.SourceFile("demo", f"pkg/m{i}.py", text, outline_of(ast.parse(text), f"pkg/m{i}.py"))
             for i in range(3)]
    tokenizer = Tokenizer.from_folder(default_model_dir())
    recipe = dataclasses.replace(TINY, vocab_size=tokenizer.vocab_size, train_seconds=0.001, batch_tokens=512)
    model = CausalLM(recipe.model_config([tokenizer.token_to_id("<|endoftext|>")], 1))
    init_weights(model, 0)
    log: list[dict] = []
    plan = phases(recipe, ("short",))
    train(model, SampleBuilder(files, tokenizer), recipe, torch.device("cpu"), 0, log.append, plan,
          deadline=time.perf_counter() + 300)
    assert not [r for r in log if r.get("event") == "deadline"]
    assert plan[0].steps == 3 + CALIBRATION_STEPS + 1
    assert [r["steps"] for r in log if r.get("event") == "phase done"] == [plan[0].steps]


def test_warming_up_the_training_graphs_leaves_the_weights_and_gradients_alone() -> None:
    from training.loop_forward import loss_sum
    from training.trainer import warm_up

    model = CausalLM(TINY.model_config([2], 1))
    init_weights(model, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    calls: list[tuple[int, ...]] = []

    def objective(m, ids, labels, rope_dtype):
        calls.append(tuple(ids.shape))
        return loss_sum(m, ids, labels, rope_dtype)

    warm_up(model, objective, [(2, 16), (1, 32)], None, False)
    assert calls == [(2, 16), (1, 32)]
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_a_plan_that_no_longer_fits_before_the_deadline_shrinks_in_proportion() -> None:
    from training.trainer import fit_to_deadline

    plan, log = phases(dataclasses.replace(SMALL, train_seconds=400.0)), []
    fit_to_deadline(plan, 300.0, log.append)
    assert sum(p.seconds for p in plan) == pytest.approx(300.0)
    assert plan[2].seconds + plan[3].seconds == pytest.approx(300.0 * SMALL.fim_share)
    assert log == [{"event": "budget", "planned_s": 400.0, "fitted_s": 300.0}]
    fit_to_deadline(plan, 500.0, log.append)  # room enough: unchanged
    assert sum(p.seconds for p in plan) == pytest.approx(300.0) and len(log) == 1


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_the_optimizer_choice_covers_every_parameter_once_and_trains(name: str) -> None:
    """Muon takes exactly the layers' projection matrices; AdamW the embedding, norms and Loop
    gates (decayed or not as before); every parameter is stepped by one of them, and a few steps
    on a fixed batch lower the loss."""
    recipe = dataclasses.replace(TINY, optimizer=name, lr=3e-3)
    model = CausalLM(recipe.model_config([2], 1))
    init_weights(model, 0)
    optimizer = _optimizer(model, recipe, torch.device("cpu"))
    owner = {id(p): type(part).__name__ for part in optimizer.parts for g in part.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert sorted(owner) == sorted(id(p) for p in names.values())  # each once, none left out
    muon = {n for n, p in names.items() if owner[id(p)] == "Muon"}
    matrices = {n for n in names if n.startswith("model.layers.") and n.endswith("_proj.weight")}
    assert muon == (matrices if name == "muon" else set())
    assert all(owner[id(p)] == "AdamW" for n, p in names.items()
               if "embed" in n or "norm" in n or "gate_projections" in n)
    assert len(optimizer.param_groups) == (3 if name == "muon" else 2)
    ids = torch.randint(3, recipe.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(6):
        value, _ = loss(model, ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(float(value))
    assert losses[-1] < losses[0] - 0.05
