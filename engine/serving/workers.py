"""The worker processes of the engine: one per GPU (or CPU rank) of a tensor-parallel engine,
or a single one holding the whole model (the language server's engine on a CPU), spawned by
the main process (worker_group.py).

Each worker joins the process group (NCCL on GPUs, gloo on CPUs; a world of one has none),
builds its shard of the model with the spec's factory (a checkpoint read slice by slice, or
random weights in benchmarks), and then rank 0 leads (`lead`): it picks the all-reduce
variant on every rank, sizes the K/V pool on every GPU, builds the engine core and either
serves the main process's requests (`serve`) or runs a driver function (benchmarks, tests).
The other ranks follow (ranks.py). Rank 0 talks to the main process over one duplex pipe;
every rank can report a fatal error over it (ranks > 0 over a one-way pipe) before it exits.
Alone, rank 0 serves with the engine core of a single device, exactly as a thread of the
main process would (`AsyncEngine`): a failed step fails its requests and serving goes on.
A worker whose main process has gone (killed, or exited without stopping it) exits at once
and quietly: nobody is left to serve or to report to, and its stderr is the main process's
(an editor's log).
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import torch
import torch.distributed as dist

from ..model.loader import LoadedModel
from ..model.parallel import Shard
from .async_engine import request_output
from .core import EngineCore, StepEvent
from .memory import UTILIZATION, plan_pool
from .ranks import RankGroup, RankState, follow, post, take
from .scheduler import AdmissionError, SchedulerConfig
from .sequence import Sequence
from .worker_process import main_process_alive, prepare_worker_process

# NVLink multicast is never used (no multimem collectives); keeping NCCL, PyTorch's symmetric
# memory and NVSHMEM off it also keeps them from creating multicast objects on shared hosts.
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """Everything a worker needs; picklable (it crosses into spawned processes)."""

    # (shard, device) -> LoadedModel or CausalLM: this rank's slice of the model. A module-level
    # function or a functools.partial of one.
    factory: Callable[[Shard, torch.device], Any]
    world: int  # 1: one process holding the whole model
    device: str = "cuda"  # "cuda": rank r on cuda:(first_device + r); "cpu": gloo ranks on the CPU
    first_device: int = 0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    plan_memory: bool = True  # on GPUs: size the pool with memory.plan_pool (else scheduler.num_blocks)
    utilization: float = UTILIZATION
    all_reduce: str = "auto"  # collectives.ALL_REDUCE_MODES
    cpu_threads: int = 1  # torch intra-op threads per CPU rank
    # Instead of serving: run driver(session, **driver_args) on rank 0 and return its result.
    driver: Callable[..., Any] | None = None
    driver_args: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 600.0  # process-group operations


@dataclass
class LeaderSession:
    """What a driver function gets on rank 0: the engine core and the handle on every rank."""

    core: EngineCore
    group: RankGroup
    spec: WorkerSpec
    info: dict[str, Any]
    eos_ids: tuple[int, ...] = ()

    @property
    def model(self):
        return self.group.state.model

    def rebuild(self, all_reduce: str | None = None, **config_changes: Any) -> dict[str, Any]:
        """A fresh engine core (new pool, new graphs), optionally with another all-reduce
        variant or scheduler settings; returns the updated info."""
        self.core = None  # type: ignore[assignment]  # free the old pool and graphs first
        if all_reduce is not None:
            self.info["all_reduce"], self.info["all_reduce_error"] = self.group.call("set_all_reduce", all_reduce)[0]
        config = dataclasses.replace(self.info["config"], **config_changes)
        self.core = EngineCore(self.model, config, self.eos_ids, group=self.group if self.group.world > 1 else None)
        self.info.update(config=config, graphs=self.core.runner.graphs is not None)
        return self.info

    def profile(self, run: Callable[[], int]) -> list[dict[str, float]]:
        """Per-rank step profiles (profiling.py) of `run()`, which returns the steps it ran."""
        self.group.call("profile_start")
        steps = run()
        return self.group.call("profile_stop", steps)


def worker_main(rank: int, spec: WorkerSpec, port: int, peers: list[Connection], to_main: Connection) -> None:
    """Process entry. `peers`: rank 0 holds one pipe per other rank, rank r > 0 its pipe to rank 0."""
    prepare_worker_process()
    run_worker(rank, spec, port, peers, to_main)


def run_worker(rank: int, spec: WorkerSpec, port: int, peers: list[Connection], to_main: Connection) -> None:
    """A rank's work, in a process prepared by `prepare_worker_process` (worker_process.py)."""
    for key, value in MULTICAST_OFF.items():
        os.environ.setdefault(key, value)
    try:
        state, lm = _join(rank, spec, port)
        if rank == 0:
            lead(state, RankGroup(state, peers), spec, to_main, lm)
        else:
            follow(state, peers[0])
    except BaseException as exc:
        if not main_process_alive():  # e.g. "ready" sent to a main process that is gone
            os._exit(0)
        try:
            post(to_main, ("error", rank, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _join(rank: int, spec: WorkerSpec, port: int) -> tuple[RankState, LoadedModel | None]:
    if spec.device == "cuda":
        device = torch.device("cuda", spec.first_device + rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(spec.cpu_threads)
    if spec.world > 1:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
            rank=rank, world_size=spec.world, timeout=timedelta(seconds=spec.timeout_s),
        )
    shard = Shard(rank, spec.world)
    built = spec.factory(shard, device)
    lm = built if isinstance(built, LoadedModel) else None
    model = lm.model if lm is not None else built
    return RankState(model, shard, device), lm


def lead(state: RankState, group: RankGroup, spec: WorkerSpec, to_main: Connection, lm: LoadedModel | None) -> None:
    """Rank 0: set up every rank, then serve the main process or run the driver."""
    model = state.model
    eos_ids = tuple(lm.tokenizer.special.eos_ids) if lm is not None else ()
    decode = lm.tokenizer.decode if lm is not None else None
    running, why = group.call("set_all_reduce", spec.all_reduce)[0]
    config, pool = spec.scheduler, ""
    if spec.plan_memory and state.device.type == "cuda":
        plan = plan_pool(model, config, spec.utilization, group=group)
        config, pool = dataclasses.replace(config, num_blocks=max(plan.num_blocks, 1)), plan.describe()
    # Alone, the core runs as on one device in this process (no step is sent anywhere, and
    # a failed step fails only its requests).
    core = EngineCore(model, config, eos_ids, decode, group=group if spec.world > 1 else None)
    info = {"config": config, "pool": pool, "all_reduce": running, "all_reduce_error": why,
            "graphs": core.runner.graphs is not None, "world": spec.world, "device": str(state.device),
            "stats": core.stats()}
    try:
        if spec.driver is not None:
            session = LeaderSession(core, group, spec, info, eos_ids)
            del core  # the session owns it (and may replace it)
            post(to_main, ("result", spec.driver(session, **spec.driver_args)))
        else:
            post(to_main, ("ready", info))
            serve(core, to_main)
    finally:
        group.stop()


def serve(core: EngineCore, conn: Connection) -> None:
    """Rank 0's engine loop: commands from the main process, one step, its events back.

    Alone on a CPU, a step of warm-ups (prefill-only requests) reads the commands that come
    while it runs, between the model's layers, and is given up for one that should not wait
    for it (`Interrupt`): the commands it read are then applied, in the order they came,
    before the next step."""
    held: list[tuple[str, Any]] = []  # commands read while a step ran
    alone_on_cpu = core.runner.group is None and core.runner.device.type == "cpu"
    interrupt = Interrupt(conn, core, held) if alone_on_cpu else None
    while True:
        wait = 0.0 if core.has_work else None  # block while idle
        while held or conn.poll(wait):
            wait = 0.0
            kind, arg = held.pop(0) if held else take(conn)  # EOFError: the main process is gone
            if kind == "stop":
                _send_updates(conn, core, [StepEvent(seq, [], True) for seq in _cancel_all(core)])
                return
            _send_updates(conn, core, _command(core, kind, arg))
        if core.has_work:
            # Sent after every step, events or not: the main process also reads it as a sign of life.
            _send_updates(conn, core, core.step(interrupt), always=True)  # a failed step raises: fatal here


class Interrupt:
    """Whether the warm-up step running should be given up (`EngineCore.step`): it reads the
    commands that arrived meanwhile into `held` (the serving loop applies them after the
    step) and says yes for a generation (a request that is not prefill-only: on a CPU a
    warm-up chunk runs for a hundred milliseconds or more, which the generation's first
    token would wait), for cancelling a request the engine runs, and for `stop`; another
    warm-up waits for the step, as before. A main process gone also ends the step (the
    serving loop then reads the end of the pipe)."""

    def __init__(self, conn: Connection, core: EngineCore, held: list[tuple[str, Any]]) -> None:
        self.conn, self.core, self.held = conn, core, held

    def __call__(self) -> bool:
        try:
            while self.conn.poll(0):
                self.held.append(take(self.conn))
        except (EOFError, OSError):
            return True
        return any(self._urgent(kind, arg) for kind, arg in self.held)

    def _urgent(self, kind: str, arg: Any) -> bool:
        if kind == "add":
            return arg[2].max_tokens > 0
        if kind == "cancel":
            seq = self.core.requests.get(arg)
            return seq is not None and seq in self.core.scheduler.running
        return True  # "stop", or a command this loop does not know (it fails after the step)


def _command(core: EngineCore, kind: str, arg: Any) -> list[StepEvent]:
    if kind == "add":
        request_id, prompt_ids, params, priority, speculate = arg
        try:
            core.add(request_id, prompt_ids, params, priority, speculate)
        except AdmissionError as exc:  # the main process checked too; pool sizes may differ after a restart
            seq = Sequence(request_id, prompt_ids, params, priority, speculate, finish_reason="error", error=str(exc))
            return [StepEvent(seq, [], True)]
        return []
    if kind == "cancel":
        seq = core.abort(arg)
        return [StepEvent(seq, [], True)] if seq is not None else []
    raise ValueError(f"unknown engine command {kind!r}")


def _cancel_all(core: EngineCore) -> list[Sequence]:
    return [seq for seq in (core.abort(rid) for rid in list(core.requests)) if seq is not None]


def _send_updates(conn: Connection, core: EngineCore, events: list[StepEvent], always: bool = False) -> None:
    if not events and not always:
        return
    updates = [(ev.seq.request_id, ev.new_tokens, request_output(ev.seq) if ev.finished else None) for ev in events]
    post(conn, ("updates", updates, core.stats()))
