"""The training loop: fp32 master weights, bf16 autocast, AdamW (or Muon on the layers'
matrices), warm-up + cosine schedule, phases (short rows, long rows for the 8K prompts,
completion rows), loss and tokens/s logged.

The run is sized by time: the first steps of each phase are timed and fix that phase's step
count (logged), refitted at every log line from the latest steps' pace (the first steps run
on prefetched rows, faster than the rest), so the schedule ends when the time does. Passing
the counts it ended with back with `steps=` reruns the same schedule without timing; data and
initialisation depend only on the seed. Rows come from DataLoader worker processes, each
building rows by index, and a share of the steps replays rows trained on once (training/feed.py),
so the data is the same for any worker count and pace. Compiled training graphs are built
before the clock starts, while the first phase's rows pile up.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from loopls.engine.model.transformer import CausalLM

from .feed import Feed
from .loop_forward import loss_sum
from .recipe import Recipe
from .samples import FIM_ONLY, PAD_LABEL, Mix, SampleBuilder

CALIBRATION_STEPS = 12  # steps timed (after the first few) to fix a phase's length
EXPORT_RESERVE_S = 5.0  # per phase: its export, and the next phase's first rows, before a deadline


class Rows(torch.utils.data.Dataset):
    """Row i of one phase, built on demand by whichever worker process asks."""

    def __init__(self, builder: SampleBuilder, phase: Phase, size: int) -> None:
        self.builder, self.phase, self.size = builder, phase, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.phase
        ids, labels = self.builder.row(index, p.length, p.budgets, p.name, p.mix, p.middle_only)
        return torch.tensor(ids, dtype=torch.int32), torch.tensor(labels, dtype=torch.int64)


def init_weights(model: CausalLM, seed: int) -> None:
    """GPT-2 style: normal(0, 0.02), residual output projections scaled down by the depth they
    feed (layers x loops), norms one, Loop gates zero (g = 0.5: global and local alike)."""
    gen = torch.Generator().manual_seed(seed)
    depth = model.config.num_hidden_layers * model.config.loop_num
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "gate_projections" in name:
                p.zero_()
            else:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _optimizer(model: CausalLM, recipe: Recipe, device: torch.device) -> "Optimizers":
    """AdamW on everything; with `recipe.optimizer == "muon"`, Muon (torch.optim.Muon, its update
    scaled to AdamW's RMS so the same learning rates and weight decay apply) on the layers'
    projection matrices, AdamW on the embedding, the norms and the Loop gates."""
    named = list(model.named_parameters())
    muon = recipe.optimizer == "muon"
    matrix = [p for n, p in named
              if muon and p.dim() == 2 and n.startswith("model.layers.") and n.endswith("_proj.weight")]
    taken = {id(p) for p in matrix}
    decay = [p for n, p in named if id(p) not in taken and p.dim() >= 2 and "gate_projections" not in n]
    rest = [p for n, p in named if id(p) not in taken and not (p.dim() >= 2 and "gate_projections" not in n)]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    parts = [torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, recipe.beta2), eps=1e-8, fused=device.type == "cuda")]
    if matrix:
        parts.append(torch.optim.Muon(matrix, lr=recipe.lr, weight_decay=recipe.weight_decay,
                                      adjust_lr_fn="match_rms_adamw"))
    return Optimizers(parts)


class Optimizers:
    """Several optimizers stepped as one: the loop sets `lr` on every group of all of them."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = parts
        self.param_groups = [g for part in parts for g in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()


@dataclass
class Phase:
    name: str
    length: int
    budgets: tuple[int, ...]
    seconds: float  # time budget when the step count is not given
    peak: float  # learning rate at the top of this phase's cosine
    floor: float
    cosine: tuple[float, float]  # the stretch of the cosine (0..1) this phase runs through
    warmup: int  # steps of linear warm-up at the phase's start
    mix: Mix | None = None
    middle_only: bool = False  # loss only on what the model writes (FIM middles)
    steps: int | None = None
    group: str = ""  # the phase name the command line knows (--phases, --compile); default: name

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    def learning_rate(self, i: int) -> float:
        a, b = self.cosine
        x = a + (b - a) * (i / self.steps if self.steps else 0.0)
        if i < self.warmup:
            return self.peak * (i + 1) / self.warmup
        return self.floor + (self.peak - self.floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, x)))


def phases(recipe: Recipe, names: tuple[str, ...] = ("short", "long", "fim")) -> list[Phase]:
    """The recipe's phases: pretraining on short rows, then long rows (one cosine across
    both), then the completion phase on the server's FIM layout with loss on the middles only
    (its own, lower cosine), in two stretches: "fim" on the server's 2K prompts, then
    "fim-long" on long rows (`Recipe.fim_long_share`; none on long rows when it is 0). `names`
    picks some, e.g. ("fim",) to continue a checkpoint; "fim" names both stretches."""
    floor = recipe.lr * recipe.min_lr_ratio
    cut = 1 - recipe.long_share
    pretrain = 1 - recipe.fim_share
    split = recipe.fim_long_share
    every = {
        "short": [(pretrain * cut, Phase("short", recipe.short_len, recipe.short_budgets, 0.0, recipe.lr, floor,
                                         (0.0, cut), recipe.warmup_steps))],
        "long": [(pretrain * recipe.long_share, Phase("long", recipe.long_len, recipe.long_budgets, 0.0, recipe.lr,
                                                      floor, (cut, 1.0), 0))],
        "fim": [(recipe.fim_share * (1 - split), Phase("fim", recipe.fim_len, recipe.fim_budgets, 0.0, recipe.fim_lr,
                                                       floor, (0.0, 1 - split), recipe.fim_warmup_steps,
                                                       FIM_ONLY, True))]
               + [(recipe.fim_share * split, Phase("fim-long", recipe.long_len, recipe.fim_long_budgets, 0.0,
                                                   recipe.fim_lr, floor, (1 - split, 1.0), 0,
                                                   FIM_ONLY, True, group="fim"))] * (split > 0),
    }
    chosen = [item for n in names for item in every[n]]
    total = sum(share for share, _ in chosen)
    for share, phase in chosen:
        phase.seconds = recipe.train_seconds * share / total
    return [phase for _, phase in chosen]


@dataclass
class Summary:
    steps: list[int]
    tokens: int  # trained on, replays included
    fresh_tokens: int  # of them, trained on for the first time
    seconds: float
    last_loss: float
    tokens_per_second: float


def train(model: CausalLM, builder: SampleBuilder, recipe: Recipe, device: torch.device, workers: int,
          log: Callable[[dict], None], plan: list[Phase], steps: tuple[int, ...] | None = None,
          deadline: float | None = None, after_phase: Callable[[Summary], None] | None = None) -> Summary:
    """Train `model` (fp32, already on `device`) in place. `deadline` (a time.perf_counter()
    value) stops training early, logged, so that a run under a hard time limit still exports;
    a plan sized by time is shrunk to fit before it, once the graphs are compiled."""
    autocast = device.type == "cuda"
    rope_dtype = torch.bfloat16 if autocast else None
    # one graph per row length; it pays at this size, where eager time is kernel launches
    compiled = torch.compile(loss_sum, dynamic=False) if recipe.compile and autocast else loss_sum
    optimizer = _optimizer(model, recipe, device)
    if steps is not None:
        for phase, n in zip(plan, steps):
            phase.steps = n

    def open_feed(phase: Phase) -> Feed:
        loader = torch.utils.data.DataLoader(
            Rows(builder, phase, 10**8), batch_size=_rows_per_step(recipe, phase), num_workers=workers,
            prefetch_factor=8 if workers else None, persistent_workers=False)
        return Feed(iter(loader), _rows_per_step(recipe, phase), recipe.reuse, recipe.reuse_lead, builder.seed,
                    phase.name, pin=device.type == "cuda")

    feed = open_feed(plan[0])  # its rows pile up while the graphs compile
    if compiled is not loss_sum:
        shapes = sorted({(_rows_per_step(recipe, p), p.length) for p in plan if p.group in recipe.compile})
        t = time.perf_counter()
        warm_up(model, compiled, shapes, rope_dtype, autocast)
        _sync(device)
        log({"stage": "compile", "seconds": round(time.perf_counter() - t, 1), "graphs": shapes})
    if deadline is not None and steps is None:
        fit_to_deadline(plan, deadline - time.perf_counter() - EXPORT_RESERVE_S * len(plan), log)
    step, tokens, fresh, t_start, last = 0, 0, 0, time.perf_counter(), float("nan")
    for k, phase in enumerate(plan):
        objective = compiled if phase.group in recipe.compile else loss_sum
        feed = feed if k == 0 else open_feed(phase)
        i, t_phase, timed, waited, replayed = 0, time.perf_counter(), None, 0.0, 0
        fitted = phase.steps is None  # sized by time: refitted as the run goes
        t_log, i_log = t_phase, 0
        t_wait = time.perf_counter()
        for ids, labels, again in feed:
            waited += time.perf_counter() - t_wait
            if phase.steps is not None and i >= phase.steps:
                break
            if deadline is not None and time.perf_counter() > deadline:
                log({"event": "deadline", "phase": phase.name, "step": step, "planned": phase.steps})
                phase.steps = i
                break
            lr = phase.learning_rate(i)
            for group in optimizer.param_groups:
                group["lr"] = lr
            count = int((labels != PAD_LABEL).sum())  # on the host: no wait for the GPU
            ids = ids.to(device, torch.int64, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                value = objective(model, ids, labels, rope_dtype) / max(count, 1)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            step, i, tokens = step + 1, i + 1, tokens + count
            replayed, fresh = replayed + again, fresh + (0 if again else count)
            if phase.steps is None and i == 3:
                _sync(device)
                timed = time.perf_counter()  # the first steps pay for kernel selection and warm-up
            if phase.steps is None and i == 3 + CALIBRATION_STEPS:
                _sync(device)
                per_step = (time.perf_counter() - timed) / CALIBRATION_STEPS
                phase.steps = max(i + 1, int(phase.seconds / per_step))
                t_log, i_log = time.perf_counter(), i
                log({"event": "calibrated", "phase": phase.name, "seconds_per_step": round(per_step, 4),
                     "steps": phase.steps, "rows_per_step": _rows_per_step(recipe, phase),
                     "row_tokens": phase.length})
            if i % recipe.log_every == 0 or i == phase.steps:
                last = value.item()
                now = time.perf_counter()
                if fitted and i_log and i > i_log:
                    # The first steps run on prefetched rows; once the row builders set the pace the
                    # steps slow down: refit the count so that the phase still ends on time.
                    per_step = (now - t_log) / (i - i_log)
                    phase.steps = max(i, i + int((t_phase + phase.seconds - now) / per_step))  # i: time is up
                    t_log, i_log = now, i
                elapsed = now - t_start
                log({"step": step, "phase": phase.name, "loss": round(last, 4), "lr": float(f"{lr:.3g}"),
                     "tokens": tokens, "fresh_tokens": fresh, "tokens_per_s": round(tokens / elapsed),
                     "elapsed_s": round(elapsed, 1), "data_wait_s": round(waited, 1)})
            t_wait = time.perf_counter()
        feed.close()
        log({"event": "phase done", "phase": phase.name, "steps": i, "replayed_steps": replayed,
             "seconds": round(time.perf_counter() - t_phase, 1)})
        seconds = time.perf_counter() - t_start
        summary = Summary([p.steps or 0 for p in plan], tokens, fresh, seconds, last, tokens / seconds)
        if after_phase is not None:
            after_phase(summary)
    return summary


def _rows_per_step(recipe: Recipe, phase: Phase) -> int:
    return max(1, recipe.batch_tokens // phase.length)


def warm_up(model: CausalLM, objective: Callable, shapes: list[tuple[int, int]],
            rope_dtype: torch.dtype | None, autocast: bool) -> None:
    """Run `objective` forward and backward once per (rows, length), as a step runs it, so
    that a compiled one builds its graphs now, not on the clock; the weights are untouched
    and the gradients dropped."""
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    for rows, length in shapes:
        ids = (torch.arange(rows * length, device=device) % vocab).view(rows, length)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            value = objective(model, ids, ids.clone(), rope_dtype)
        value.backward()
    for p in model.parameters():
        p.grad = None


def fit_to_deadline(plan: list[Phase], seconds: float, log: Callable[[dict], None]) -> None:
    """Shrink the phases' time budgets in proportion when they no longer fit in `seconds`."""
    planned = sum(p.seconds for p in plan)
    if planned > seconds > 0:
        for p in plan:
            p.seconds *= seconds / planned
        log({"event": "budget", "planned_s": round(planned, 1), "fitted_s": round(seconds, 1)})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def json_logger(stream) -> Callable[[dict], None]:
    def log(record: dict) -> None:
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    return log
