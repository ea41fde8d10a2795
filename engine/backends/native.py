"""The `native` backend: loopls's own serving engine (paged KV, prefix cache, continuous
batching). With one GPU (or the CPU) it runs in this process on its own worker thread, or,
with `engine_process` on a CPU (the language server), in a worker process of its own
(serving/parallel_engine.py), whose torch work never waits for this process's Python threads;
with `tensor_parallel_size` > 1 the model is split over that many GPUs, one worker process
each. With worker processes this process keeps only the tokenizer. A request of max_tokens 0
only prefills its prompt into the prefix cache (the language server's warm-ups)."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from ..model.config import ModelConfig
from ..model.checkpoint import CheckpointError, read_checkpoint
from ..model.loader import load_checkpoint, load_tensor_parallel
from ..model.models import DEFAULT_MODEL, resolve_model_name
from ..model.parallel import TensorParallelError, check_tp_size
from ..model.sampling_params import SamplingParams
from ..model.tokenizer import Tokenizer
from ..serving.async_engine import AsyncEngine
from ..serving.memory import plan_pool
from ..serving.parallel_engine import ParallelEngine
from ..serving.priority import Priority
from ..serving.request_frontend import EngineError, RequestFrontend, RequestStream
from ..serving.scheduler import SchedulerConfig
from ..serving.standby import StandbyProcess
from ..serving.workers import WorkerSpec
from .base import BackendConfig, BackendError, BackendInfo, LoadStop
from .best_of import BestOfStream

BLOCK_SIZE = 16
# On a CPU: a request after a warm-up computes its new tokens and the part of the context's
# last block the prefix cache does not hold (it keeps whole blocks), and a CPU step's cost
# grows with every token it computes (about 1.4 ms each for the default model, int8): blocks
# of 4 leave 0-3 such tokens instead of 0-15 (first token 25 against 34 ms CPU, the decode
# step the same; blocks of 2 cost more in bookkeeping than they save: docs/benchmarks.md).
CPU_BLOCK_SIZE = 4
# CPU: room for this many full-budget prompts at once (the prefix cache keeps the rest).
_CPU_PROMPTS = 4
CPU_PREFILL_ONLY_CHUNK = 128  # tokens per step of a warm-up (SchedulerConfig.prefill_only_chunk)


class NativeBackend:
    def __init__(self, engine: RequestFrontend, tokenizer: Tokenizer, config: ModelConfig, info: BackendInfo) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.context_limit = config.max_position_embeddings
        self.info = info
        # supersede key -> its best-of request: a newer request of the key cancels all of it
        # (the engine's own keys see only one of its requests)
        self._best_of: dict[str, BestOfStream] = {}

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        priority: Priority = Priority.INLINE,
        supersede: str | None = None,
    ) -> RequestStream | BestOfStream:
        previous = self._best_of.pop(supersede, None) if supersede else None
        if previous is not None:
            previous.cancel()
        if params.best_of == 1:
            return self.engine.submit(prompt_ids, params, priority=priority, supersede=supersede)
        stream = BestOfStream(self.engine, prompt_ids, params, priority, self.tokenizer.decode,
                              frozenset(self.tokenizer.special.eos_ids), supersede)
        if supersede:
            self._best_of[supersede] = stream
            stream.when_done(lambda: self._forget(supersede, stream))
        return stream

    def _forget(self, key: str, stream: BestOfStream) -> None:
        if self._best_of.get(key) is stream:
            del self._best_of[key]

    def stats(self) -> dict[str, Any]:
        return self.engine.stats()

    def shutdown(self) -> None:
        self.engine.shutdown()


def pick_device(device: str) -> str:
    """`auto`, `cpu`, `cuda` or `cuda:N` as a device that exists here; BackendError if not."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise BackendError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU was found"
            raise BackendError(f"device {device}: CUDA is not available on this machine ({why})")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise BackendError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def cpu_pool_blocks(config: ModelConfig, context_tokens: int, block_size: int = CPU_BLOCK_SIZE) -> int:
    """KV blocks on a CPU: room for a few prompts (the plain-torch attention gathers keys)."""
    tokens = min(config.max_position_embeddings, context_tokens + 4096) * _CPU_PROMPTS
    return -(-tokens // block_size)


def cpu_threads() -> int:
    """Torch intra-op threads for an engine on the CPU: half the cores this process may use,
    at least one. The engine shares the machine with the language server's other threads
    (event loop, prompt building, indexing) and the editor, and OpenMP threads spin-wait for
    each other: on two busy cores, two threads made a decode step of the default model ten
    times slower than one; in an engine process of its own, beside one busy core, twice as
    slow (docs/benchmarks.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


def load_native(config: BackendConfig, stop: LoadStop | None = None,
                standby: StandbyProcess | None = None) -> NativeBackend:
    """Load the checkpoint and start its serving engine (split over `config.tensor_parallel_size`
    GPUs, or CPU ranks with device "cpu", when that is more than 1; in a process of its own on
    a CPU with `config.engine_process`, which may be `standby`, started ahead). `stop` can end
    worker processes still starting."""
    model_name, device, context_tokens = config.model, config.device, config.context_tokens
    if config.tensor_parallel_size > 1:  # CPU ranks keep fp32 weights (int8 is for a whole model)
        return _load_workers(model_name, device, context_tokens, config.tensor_parallel_size, stop)
    device = pick_device(device)
    on_cpu = torch.device(device).type == "cpu"
    int8 = on_cpu and config.cpu_weights == "int8"  # on a GPU the option does nothing
    if config.engine_process and on_cpu:
        return _load_workers(model_name, device, context_tokens, 1, stop, int8, standby)
    try:
        lm = load_checkpoint(resolve_model_name(model_name), device=device, int8_weights=int8)
    except (CheckpointError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. an unusable device
        raise BackendError(str(exc)) from None
    if lm.device.type == "cuda":
        block_size = BLOCK_SIZE
        blocks = max(plan_pool(lm.model, SchedulerConfig(block_size=block_size)).num_blocks, 1)
    else:
        block_size = CPU_BLOCK_SIZE
        blocks = cpu_pool_blocks(lm.config, context_tokens)
        torch.set_num_threads(cpu_threads())  # process-wide: the engine is this process's only torch user
    # On a CPU a warm-up's chunk is short: a generation arriving mid-chunk waits for it.
    chunk = CPU_PREFILL_ONLY_CHUNK if lm.device.type == "cpu" else None
    engine = AsyncEngine.from_loaded(lm, SchedulerConfig(num_blocks=blocks, block_size=block_size,
                                                         prefill_only_chunk=chunk))
    engine.start()
    info = BackendInfo(backend="native", model=str(model_name or DEFAULT_MODEL), path=str(lm.path),
                       model_type=lm.config.model_type, device=str(lm.device), untrained=lm.untrained,
                       prefill_only=True)
    return NativeBackend(engine, lm.tokenizer, lm.config, info)


def _load_workers(model_name: str | None, device: str, context_tokens: int, world: int,
                  stop: LoadStop | None, int8_weights: bool = False,
                  standby: StandbyProcess | None = None) -> NativeBackend:
    """The engine in `world` worker processes: tensor-parallel ranks, or one process holding
    the whole model (on a CPU: the same weights, numerics, scheduler and thread count as the
    engine in this process, so the same tokens)."""
    try:
        meta = read_checkpoint(resolve_model_name(model_name))
        check_tp_size(meta.config, world)
    except (CheckpointError, TensorParallelError, OSError) as exc:
        raise BackendError(str(exc)) from None
    kind, first = _parallel_devices(pick_device(device), world)
    chunk = CPU_PREFILL_ONLY_CHUNK if kind == "cpu" else None
    block_size = CPU_BLOCK_SIZE if kind == "cpu" else BLOCK_SIZE
    scheduler = SchedulerConfig(num_blocks=cpu_pool_blocks(meta.config, context_tokens, block_size),
                                block_size=block_size, prefill_only_chunk=chunk)
    spec = WorkerSpec(
        factory=functools.partial(load_tensor_parallel, str(meta.path), int8_weights=int8_weights), world=world,
        device=kind,
        first_device=first, scheduler=scheduler, plan_memory=kind == "cuda",
        cpu_threads=cpu_threads() if world == 1 else 1,
    )
    engine = ParallelEngine(spec, meta.config, standby=standby)
    if stop is not None:
        stop.register(engine.shutdown)  # from another thread, also while it starts
    try:
        engine.start()
    except EngineError as exc:
        raise BackendError(str(exc)) from None
    if world == 1:
        where = "cpu"
    else:
        where = f"{world} GPUs (cuda:{first}..cuda:{first + world - 1})" if kind == "cuda" else f"{world} CPU ranks"
    info = BackendInfo(backend="native", model=str(model_name or DEFAULT_MODEL), path=str(meta.path),
                       model_type=meta.config.model_type, device=where, untrained=meta.untrained,
                       prefill_only=True)
    return NativeBackend(engine, meta.tokenizer, meta.config, info)


def _parallel_devices(device: str, world: int) -> tuple[str, int]:
    """("cuda", first GPU) or ("cpu", 0) for `world` ranks; BackendError if the GPUs are missing."""
    if device == "cpu":
        return "cpu", 0
    first = int(device.split(":", 1)[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if first + world > count:
        raise BackendError(
            f"tensorParallelSize {world} needs CUDA devices {first}..{first + world - 1}, but {count} "
            f"{'is' if count == 1 else 'are'} visible"
        )
    return "cuda", first
