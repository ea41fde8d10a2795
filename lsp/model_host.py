"""The model behind the server and the CLI: loaded in the background, its failure reported
once, every request accounted.

`ModelHost` loads the backend named by the options on a worker thread (the server shows
`$/progress` "loopls: loading model" meanwhile). A model that cannot be loaded is reported
once through `report` and the host stays in the "error" state, answering `None` to `ready()`
(completions then answer nothing, not an error per keystroke), until the options name
another model or `RETRY_S` has passed (a retry that fails the same way says nothing new).
`generate` submits one request through the backend interface and waits
for it, counting what it generated and which tokens were wasted (generated for a request
that was cancelled or superseded); a caller may stop a request early once it has what it
needs, which does not count as waste. A request the backend fails (a model server gone away)
raises `EngineFailed`; the first failure of a run is reported, the recovery logged.
`shutdown` also stops a load in progress (an engine process still starting is killed, see
`LoadStop`): the server's `exit` must leave no engine process behind. An engine process the
server started ahead (`standby`, engine/serving/standby.py) goes to the first load, which runs
in it if its model runs in a process of its own; the host ends it otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any

from loopls.context.privacy import check_prompt
from loopls.engine.backends import Backend, BackendConfig, BackendError, LoadStop, load_backend
from loopls.engine.backends.base import Priority, RequestOutput, SamplingParams
from loopls.engine.model.models import DEFAULT_MODEL
from loopls.engine.serving.standby import StandbyProcess

log = logging.getLogger(__name__)
RETRY_S = 30.0
UNTRAINED_NOTICE = (
    "loopls is using the untrained tiny-random model: completions are random text that only "
    "proves the pipeline works. Leave `model.name` at loopls-coder-small (the default) or set it "
    "to a real checkpoint for useful output."
)


class ModelUnavailable(RuntimeError):
    """No model to run the request on (still loading failed, or it was unloaded)."""


class PromptRefused(ValueError):
    """A finished prompt still held a secret-looking string: it is not sent."""


class EngineFailed(RuntimeError):
    """The backend answered a request with an error (e.g. the model server went away)."""


def _same_model(a: BackendConfig | None, b: BackendConfig | None) -> bool:
    """Whether `a` and `b` load the same model: the prompt budget (which sizes the native
    K/V pool) may differ, a new budget needs no reload."""
    if a is None or b is None:
        return a is b
    return dataclasses.replace(a, context_tokens=0) == dataclasses.replace(b, context_tokens=0)


@dataclass
class Stats:
    active_generations: int = 0
    completed: int = 0
    cancelled_generations: int = 0  # engine requests cancelled (an explicit request runs several)
    generated_tokens: int = 0
    wasted_tokens: int = 0  # generated for requests that ended cancelled (superseded, $/cancelRequest)
    last_generated_tokens: int = 0
    warmups: int = 0  # prefix-cache warm-ups
    # what they generated: none on the native engine (prefill only); a remote server writes
    # one token each at most (also counted as wasted)
    warmup_tokens: int = 0
    warmups_finished: int = 0  # not cancelled (a new line's, or another document's, stops one)
    warmup_ms: int = 0  # their time from submission to the end, summed
    warmup_queue_ms: int = 0  # of which waiting for the engine (behind a generation), summed
    warmup_prompt_tokens: int = 0  # their prompts' tokens, summed
    warmup_cached_tokens: int = 0  # of which the prefix cache held already
    refused_prompts: int = 0


def guard_prompt(backend: Backend, ids: list[int]) -> None:
    """Raise PromptRefused when the decoded prompt holds a secret (redaction missed one)."""
    leaks = check_prompt(backend.tokenizer.decode(ids))
    if leaks:
        rules = ", ".join(sorted({f.rule for f in leaks}))
        raise PromptRefused(f"the prompt still held secret-looking text ({rules}); it was not sent")


class ModelHost:
    def __init__(self, thread: Executor, *, report: Callable[[str, str], None] = lambda level, message: None,
                 changed: Callable[[], None] = lambda: None,
                 progress: Callable[[str], Any] | None = None, standby: StandbyProcess | None = None) -> None:
        self.thread = thread
        self._standby = standby  # for the first load; ended once a load is over, unless it took it
        self._report = report  # (level "error" | "warning" | "info", message)
        self._changed = changed
        self._progress = progress  # an async context manager factory, around a load
        self.stats = Stats()
        self.spec: BackendConfig | None = None
        self.backend: Backend | None = None
        self.state = "idle"  # idle | loading | ready | error
        self.error: str | None = None
        self._load: asyncio.Future[Backend] | None = None
        self._failed_at = 0.0
        self._reported: str | None = None
        self._engine_down = False  # the last request failed and the user has been told
        self._name = DEFAULT_MODEL  # shown while no backend is configured
        self._loading: set[LoadStop] = set()  # one per load whose backend is not handed over yet
        self._closed = False  # shut down: nothing loads any more

    # -- loading ----------------------------------------------------------------------------

    def configure(self, spec: BackendConfig) -> None:
        """Use the model `spec` names; a change loads it (and retries a failed one)."""
        if not _same_model(spec, self.spec):
            self.spec = spec
            self._reported = None
            self._start()
        else:
            self.spec = spec

    def unavailable(self, name: str, error: str) -> None:
        """The options name no loadable backend (e.g. its API key is not set): reported once,
        completions answer nothing until the options change."""
        if self._load is not None and not self._load.done():
            self._load.cancel()
        self._load, self.spec, self._name = None, None, name
        self._fail(error)

    @property
    def name(self) -> str:
        """The model's name as the options give it."""
        if self.spec is None:
            return self._name
        return self.spec.model or (DEFAULT_MODEL if self.spec.kind == "native" else "(the server's model)")

    def _start(self) -> None:
        if self._closed:
            return
        self.state, self.error = "loading", None
        self._load = asyncio.ensure_future(self._load_backend(self.spec))
        self._load.add_done_callback(_collect)  # a load nobody awaits any more still ends quietly
        self._changed()

    async def _load_backend(self, spec: BackendConfig) -> Backend:
        loop = asyncio.get_running_loop()
        # Registered until the backend is handed over: `shutdown` stops it meanwhile, also once
        # the load has returned in the prepare thread but before this coroutine goes on.
        if self._closed:  # shut down before this load began
            raise ModelUnavailable("the model host was shut down")
        stop = LoadStop()
        self._loading.add(stop)
        standby = self._standby  # a process can be taken once: later loads spawn their own
        try:
            if self._progress is not None:
                async with self._progress(_describe(spec)):
                    backend = await loop.run_in_executor(self.thread, self._open, spec, stop, standby)
            else:
                backend = await loop.run_in_executor(self.thread, self._open, spec, stop, standby)
        except (BackendError, OSError, ValueError, RuntimeError) as exc:
            if _same_model(spec, self.spec) and not self._closed:
                self._fail(str(exc))
            raise
        except asyncio.CancelledError:  # nobody will take the backend (unavailable(), the loop ending)
            stop.stop()
            raise
        finally:
            self._loading.discard(stop)
            if standby is not None:  # not taken by this load (another backend or device): unused
                standby.close()
        if self._closed:  # shut down while it loaded (its engine is stopped already)
            backend.shutdown()
            raise ModelUnavailable("the model host was shut down")
        if not _same_model(spec, self.spec):  # the options changed while it loaded
            backend.shutdown()
            raise ModelUnavailable("superseded by another model")
        self._replace(backend)
        return backend

    @staticmethod
    def _open(spec: BackendConfig, stop: LoadStop, standby: StandbyProcess | None) -> Backend:
        return load_backend(spec, stop, standby)

    def _fail(self, error: str) -> None:
        self.state, self.error, self._failed_at = "error", error, time.monotonic()
        message = f"loopls: cannot load model {self.name!r}: {error}"
        if message != self._reported:  # once, not on every keystroke
            self._reported = message
            self._report("error", message)
        log.info("%s", message)
        self._changed()

    def _replace(self, backend: Backend) -> None:
        previous, self.backend = self.backend, backend
        if previous is not None:
            previous.shutdown()
        self.state, self.error = "ready", None
        info = backend.info
        self._report("info", f"loopls: loaded {info.model_type} model from {info.path} on {info.device} "
                             f"({info.backend})")
        if info.untrained:
            self._report("warning", UNTRAINED_NOTICE)
        self._changed()

    async def ready(self) -> Backend | None:
        """The loaded backend, waiting for a load in progress; None while the model cannot be
        loaded (already reported)."""
        if self.state == "error" and self.spec is not None and time.monotonic() - self._failed_at > RETRY_S:
            self._start()
        if self._load is None:
            return None
        try:
            return await asyncio.shield(self._load)
        except (BackendError, OSError, ValueError, RuntimeError):
            return None

    # -- requests -------------------------------------------------------------------------

    async def generate(self, ids: list[int], params: SamplingParams, priority: Priority,
                       supersede: str | None = None, enough: Callable[[list[int]], bool] | None = None,
                       wasted: Callable[[int], int] | None = None,
                       started: Callable[[Any], None] | None = None) -> RequestOutput:
        """Run one request to its end. `enough(ids so far)` may end it early (the tokens so far
        are the result). Cancelling the caller, or the engine stream `started(stream)` was
        handed, cancels the request, whose blocks the engine frees before its next step;
        `wasted(tokens)` then hears how many tokens the engine had generated for it by the
        time it stopped, and answers how many of them were shown all the same (an answer
        made of its first lines): those are not counted as wasted."""
        backend = self.backend
        if backend is None:
            raise ModelUnavailable(self.error or "the model is not loaded")
        stream = backend.submit(ids, params, priority=priority, supersede=supersede)
        if started is not None:
            started(stream)
        self.stats.active_generations += 1
        if self.stats.active_generations == 1:
            self._changed()
        early = False
        tokens: list[int] = []
        try:
            if enough is not None:
                try:
                    async for token in stream:
                        tokens.append(token)
                        if enough(tokens):
                            early = True
                            stream.cancel()
                            break
                except RuntimeError:  # a failed request's stream raises; its result says why
                    pass
            out = await asyncio.shield(stream.result())
        except asyncio.CancelledError:
            stream.cancel()
            self.stats.cancelled_generations += 1
            asyncio.ensure_future(self._count_waste(stream, wasted))
            raise
        finally:
            self.stats.active_generations -= 1
            if self.stats.active_generations == 0:
                self._changed()
        cancelled = out.finish_reason == "cancelled" and not early
        # its stream was cancelled directly
        shown = wasted(len(out.token_ids)) if cancelled and wasted is not None else 0
        self._count(out, wasted=cancelled, shown=shown)
        if out.finish_reason == "error":
            self._engine_failed(out.error or "unknown error")
            raise EngineFailed(out.error or "unknown error")
        if out.finish_reason != "cancelled":
            self._engine_answered()
        if early:  # what the caller read is the answer (the engine may have run a step further)
            out = dataclasses.replace(out, token_ids=tokens, finish_reason="stop")
        return out

    def _engine_failed(self, error: str) -> None:
        """Show the first failure of a run of failures (a dead model server fails every
        keystroke's request: the user is told once, not per keystroke)."""
        if not self._engine_down:
            self._engine_down = True
            self._report("error", f"loopls: completions are failing: {error}. "
                                  "They resume when the model answers again.")

    def _engine_answered(self) -> None:
        if self._engine_down:
            self._engine_down = False
            self._report("info", "loopls: the model answers again; completions resumed")

    def warm(self, ids: list[int], priority: Priority = Priority.BACKGROUND):
        """Prefill `ids` into the engine's prefix cache (at background priority, or a
        keystroke's `Priority.TYPING`), so that the request that follows (sharing this
        prefix) only computes its tail. The native engine generates nothing for it (and runs
        it only while no generation does); a remote server generates one token at most,
        counted as wasted. Returns the stream (cancel it when it is no longer needed), or
        None when there is no model."""
        backend = self.backend
        if backend is None:
            return None
        params = SamplingParams(max_tokens=0 if backend.info.prefill_only else 1, temperature=0.0)
        try:
            stream = backend.submit(ids, params, priority=priority)
        except ValueError:  # too long for the engine: the real request will say why
            return None
        self.stats.warmups += 1
        asyncio.ensure_future(self._count_warmup(stream))
        return stream

    async def _count_warmup(self, stream) -> None:
        out = await stream.result()
        n = len(out.token_ids)
        if out.finish_reason in ("stop", "length"):
            self.stats.warmups_finished += 1
            self.stats.warmup_ms += round(1000 * (out.metrics.get("total_s") or 0.0))
            self.stats.warmup_queue_ms += round(1000 * (out.metrics.get("queue_s") or 0.0))
            self.stats.warmup_prompt_tokens += out.prompt_tokens
            self.stats.warmup_cached_tokens += out.metrics.get("cached_tokens") or 0
        self.stats.warmup_tokens += n
        self.stats.generated_tokens += n
        self.stats.wasted_tokens += n

    async def _count_waste(self, stream, wasted: Callable[[int], int] | None) -> None:
        out = await stream.result()
        shown = wasted(len(out.token_ids)) if wasted is not None else 0
        self._count(out, wasted=True, shown=shown)

    def _count(self, out: RequestOutput, wasted: bool, shown: int = 0) -> None:
        n = len(out.token_ids)
        self.stats.generated_tokens += n
        self.stats.last_generated_tokens = n
        if wasted:
            self.stats.wasted_tokens += n - shown
        elif out.finish_reason in ("stop", "length", "cancelled"):
            self.stats.completed += 1
        if out.finish_reason == "error":
            log.error("engine request failed: %s", out.error)

    def shutdown(self) -> None:
        """Stop the backend and any load in progress (from the event loop's thread; also
        when the loop has ended, before the process exits)."""
        self._closed = True
        if self._standby is not None:  # unless a load took it
            self._standby.close()
        for stop in list(self._loading):
            stop.stop()
        if self.backend is not None:
            self.backend.shutdown()
            self.backend = None
        self.state = "idle"

    # -- status ---------------------------------------------------------------------------

    def model_json(self) -> dict[str, Any]:
        spec = self.spec
        model: dict[str, Any] = {"name": self.name, "backend": spec.kind if spec else "native",
                                 "loaded": self.state == "ready" and self.backend is not None}
        if model["loaded"]:
            info = self.backend.info
            model.update(path=info.path, modelType=info.model_type, device=info.device, backend=info.backend,
                         untrained=info.untrained)
        elif spec is not None:
            model["device"] = spec.device
        return model

    def stats_json(self) -> dict[str, Any]:
        return asdict(self.stats)


def _describe(spec: BackendConfig) -> str:
    if spec.kind == "openai":
        return f"{spec.model or 'the served model'} at {spec.url}"
    return f"{spec.model or 'tiny'} on {spec.device}" + (" (vllm)" if spec.kind == "vllm" else "")


def _collect(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
