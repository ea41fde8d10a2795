"""Tensor-parallel ranks inside the worker processes: what each rank holds, and how rank 0
drives the others.

Rank 0 runs the engine core (scheduler, block pool, step builder, sampling). Every step it
sends the built step to each other rank once (`RankGroup.send_step`): the packed inputs, the
rows of the persistent block tables the step reads and the table entries written since the
last step (batch.py). The other ranks (`follow`) run each step as it comes, on their heads'
share of the K/V pool under the same block ids, and sample it from their vocabulary shard
of the logits as rank 0 does (the step carries what a drawn row needs: its parameters and
its generator's state); the collectives inside the forward and the sampling keep them in
lockstep, so steps need no reply, and each rank feeds the next step's pending ids from its
own tokens (executor.py). Besides steps, rank 0 can
run a named `RankState` method on every rank at once (`RankGroup.call`): building the
executor (its graph capture runs collectives, so all ranks must capture together), choosing
the all-reduce variant, memory reports, profiling.

Messages travel over one duplex pipe per rank > 0, pickled by value (`post`/`take`: the
multiprocessing pickler would pass tensors as shared-memory handles, which die with their
sender). Any failure inside a step or a call is
fatal to the process (the ranks would be out of step); the main process sees the exit and
restarts the whole group (worker_group.py).
"""

from __future__ import annotations

import gc
import logging
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch

from ..model.collectives import AllReduce, AllReduceError, model_all_reduce, set_all_reduce
from ..model.parallel import Shard
from ..model.vocab_parallel import VocabShard
from .batch import HostStep, TableMirror
from .executor import StepExecutor
from .profiling import StepProfiler
from .scheduler import SchedulerConfig

log = logging.getLogger("loopls.engine")

STEP, CALL, STOP = "step", "call", "stop"


def post(conn: Connection, message: Any) -> None:
    """Send `message` by value (tensors included) over a pipe."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def take(conn: Connection) -> Any:
    """The next message `post` sent (EOFError when the other end is closed)."""
    return pickle.loads(conn.recv_bytes())


class RankError(RuntimeError):
    """A call failed on another rank; the message names the rank and the error."""


@dataclass
class RankState:
    """What one rank holds: its model shard, its step executor, its profiler."""

    model: Any
    shard: Shard
    device: torch.device
    executor: StepExecutor | None = None
    mirror: TableMirror | None = None  # ranks > 0: rank 0's persistent block-table rows
    profiler: StepProfiler | None = None

    # -- calls (run on every rank at once by RankGroup.call) -----------------------------
    def build_executor(self, config: SchedulerConfig, kinds: int, width: int, track_peaks: bool = False) -> bool:
        """Replace the executor (and its K/V pool) with one for `config`; returns whether the
        decode graphs were captured (or not asked for)."""
        self.executor = self.mirror = None
        _free_memory(self.device)
        vocab = VocabShard(self.model.config.vocab_size, self.shard.rank, self.shard.world, self.shard.group)
        self.executor = StepExecutor(self.model, config, kinds, width, vocab, track_peaks=track_peaks)
        self.mirror = TableMirror(kinds, width)
        wanted = config.cuda_graphs and self.device.type == "cuda"
        return self.executor.graphs is not None or not wanted

    def drop_graphs(self) -> None:
        if self.executor is not None:
            self.executor.drop_graphs()

    def memory_report(self) -> tuple[list[int], int, int]:
        """Drop the executor (a memory probe's); return its step peaks and (free, total) bytes."""
        peaks = list(self.executor.peaks or []) if self.executor is not None else []
        self.executor = self.mirror = None
        _free_memory(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        return peaks, free, total

    def set_all_reduce(self, mode: str) -> tuple[str, str]:
        """Use the all-reduce variant `mode` (collectives.py); every rank agrees on the result.
        Returns (the variant that runs, why the requested one does not: '' if it does)."""
        if self.shard.world == 1:
            return "none", ""
        dtype = next(self.model.parameters()).dtype
        reduce = AllReduce(self.shard.group, mode)
        try:
            running = reduce.setup(self.device, dtype)
        except AllReduceError as exc:  # agreed by every rank: they all stay on the old variant
            return model_all_reduce(self.model).mode, str(exc)
        set_all_reduce(self.model, reduce)
        return running, ""

    def run(self, fn, *args: Any) -> Any:
        """fn(this state, *args) on every rank: measurements that run collectives (benchmarks).
        `fn` must be picklable (a module-level function)."""
        return fn(self, *args)

    def profile_start(self) -> None:
        self.profiler = StepProfiler(self.device)
        self.profiler.start()

    def profile_stop(self, steps: int) -> dict:
        """Per-step times of this rank since `profile_start` (profiling.py)."""
        profiler, self.profiler = self.profiler, None
        return profiler.stop(steps) if profiler is not None else {}

    # -- steps (ranks > 0) ----------------------------------------------------------------
    def run_step(self, fields: tuple) -> None:
        packed, n, b, r, graph_batch, rows, width, writes, feed, ban_width, draws, gather = fields
        step = HostStep(packed, None, n, b, r, [], graph_batch, rows, width, writes, feed, ban_width, None, gather)
        step.tables = self.mirror.tables(step)
        # Rank 0's generators as they were before its draw: the same noise here.
        gens = [_generator(state, self.device) for _, _, state in draws or ()]
        self.executor.run(step, [(row, params, gen) for (row, params, _), gen in zip(draws or (), gens)])


def _generator(state: torch.Tensor, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.set_state(state)
    return gen


def _free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class RankGroup:
    """Rank 0's handle on the other ranks (and on its own `RankState`)."""

    def __init__(self, state: RankState, conns: list[Connection]) -> None:
        self.state = state
        self.conns = conns  # conns[i]: the pipe to rank i + 1
        self.probing = False  # memory.plan_pool: executors built now record their step peaks

    @property
    def world(self) -> int:
        return self.state.shard.world

    def call(self, name: str, *args: Any) -> list[Any]:
        """Run `RankState.<name>(*args)` on every rank together; results in rank order.

        The others start first, then rank 0 runs its own part, so calls that run
        collectives (graph capture, symmetric-memory set-up) meet on every rank."""
        for conn in self.conns:
            post(conn, (CALL, (name, args)))
        # A failure here leaves the others inside the call: it propagates and ends this
        # process, and the main process restarts the group.
        results = [getattr(self.state, name)(*args)]
        for rank, conn in enumerate(self.conns, start=1):
            status, value = take(conn)
            if status != "ok":
                raise RankError(f"tensor-parallel rank {rank}: {name} failed: {value}")
            results.append(value)
        return results

    def build_executor(self, config: SchedulerConfig, kinds: int, width: int) -> StepExecutor:
        """Every rank builds its executor for `config`; rank 0's is returned. If any rank
        could not capture its decode graphs, nobody replays them (steps must match)."""
        graphs_ok = self.call("build_executor", config, kinds, width, self.probing)
        if not all(graphs_ok):
            log.warning("CUDA graphs off on every rank: rank(s) %s could not capture them",
                        [r for r, ok in enumerate(graphs_ok) if not ok])
            self.call("drop_graphs")
        return self.state.executor

    def send_step(self, step: HostStep) -> None:
        fields = (step.packed, step.num_tokens, step.num_seqs, step.num_logits, step.graph_batch,
                  step.rows, step.width, step.writes, step.feed, step.ban_width, step.draws, step.gather)
        for conn in self.conns:
            post(conn, (STEP, fields))

    def stop(self) -> None:
        for conn in self.conns:
            try:
                post(conn, (STOP, None))
            except (BrokenPipeError, OSError):  # that rank is gone already
                pass


def follow(state: RankState, conn: Connection) -> None:
    """Rank > 0: run what rank 0 sends until it says stop (or its pipe closes)."""
    while True:
        try:
            kind, payload = take(conn)
        except EOFError:  # rank 0 is gone; the main process restarts the group
            return
        if kind == STEP:
            state.run_step(payload)
        elif kind == CALL:
            name, args = payload
            try:
                result = getattr(state, name)(*args)
            except Exception as exc:
                post(conn, ("error", f"{type(exc).__name__}: {exc}"))
                raise
            post(conn, ("ok", result))
        else:
            return
