"""The request API over worker processes: `AsyncEngine`'s interface, with the engine core on
rank 0 of a worker group (workers.py) instead of a thread of this process. The group is one
process per tensor-parallel rank, or a single process holding the whole model: the language
server's engine on a CPU, whose torch work then never waits for the server's own Python
threads (one interpreter lock each).

Requests are checked here (the same admission rules, with the pool size rank 0 reported),
sent to rank 0 as commands, and their tokens come back per step. A thread of this process
reads rank 0's messages and watches every worker. When a worker dies (or reports an error,
or rank 0 goes silent while requests are live), every request it held fails with
`finish_reason="error"` and a message saying so (its stream raises `EngineError`), the group
is killed and a new one started; requests submitted meanwhile wait and then run on it.
After `max_restarts` failed starts in a row the engine gives up: requests fail at once.

`shutdown` may come from any thread at any time, also while `start` waits for the workers
(a process about to exit shuts its engine down while the model still loads): the workers
being started are killed, `start` raises EngineError, and no worker outlives the call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from ..model.config import ModelConfig
from ..model.sampling_params import SamplingParams
from .core import check_prompt_ids
from .request_frontend import EngineError, RequestFrontend
from .request_output import RequestOutput
from .scheduler import Admission
from .standby import StandbyProcess
from .worker_group import WorkerDied, WorkerGroup
from .workers import WorkerSpec

log = logging.getLogger("loopls.engine")


class ParallelEngine(RequestFrontend):
    def __init__(
        self,
        spec: WorkerSpec,
        model_config: ModelConfig,
        *,
        start_timeout_s: float = 1800.0,  # loading a 40B checkpoint from a slow disk
        stall_timeout_s: float = 600.0,  # no message from rank 0 while requests are live
        max_restarts: int = 3,  # failed starts in a row before giving up
        standby: StandbyProcess | None = None,  # a process started ahead for the first group of one
    ) -> None:
        super().__init__()
        if spec.driver is not None:
            raise ValueError("a serving engine's spec has no driver")
        self.spec = spec
        self.model_config = model_config
        self.start_timeout_s = start_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_restarts = max_restarts
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self.broken = ""  # why the engine gave up restarting ('' while it serves)
        self._admission: Admission | None = None
        self._group: WorkerGroup | None = None
        self._starting: WorkerGroup | None = None  # a group not serving yet (first start or restart)
        self._pending: list[tuple[str, Any]] = []  # commands held while the workers restart
        self._send_lock = threading.Lock()  # guards _group, _starting, _pending and the start of stopping
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._standby = standby

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers and wait until rank 0 serves; raises EngineError if they fail."""
        if self._thread is not None:
            return
        try:
            group = self._launch()
        except WorkerDied as exc:
            if self._stopping.is_set():
                raise EngineError(f"{self.workers} was shut down while it started") from None
            raise EngineError(str(exc)) from None
        with self._send_lock:
            stopped = self._stopping.is_set()  # shut down just as it became ready
            if not stopped:
                self._group = group
        if stopped:
            group.kill()
            raise EngineError(f"{self.workers} was shut down while it started")
        self._thread = threading.Thread(target=self._run, name="loopls-engine-reader", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the workers (killed if they have not stopped within `timeout` seconds); live
        requests end as cancelled. From any thread, also while `start` or a restart waits for
        new workers: those are killed."""
        with self._send_lock:
            self._stopping.set()
            starting = self._starting
        if starting is not None:
            starting.abort()  # the thread starting it sees the exit, cleans up and gives up
        if self._thread is None:
            return
        with self._send_lock:
            group = self._group
        if group is not None:
            try:
                group.send(("stop", None))
            except WorkerDied:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive() and group is not None:  # stuck (or stopped by a signal)
            log.error("%s did not stop within %.0f s; killing it", self.workers, timeout)
            group.abort()  # the reader sees the exit and ends
            self._thread.join(timeout)
        self._thread = None

    async def __aenter__(self) -> ParallelEngine:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers, rank order (empty while restarting)."""
        with self._send_lock:
            return self._group.pids if self._group is not None else []

    @property
    def workers(self) -> str:
        """The worker group as messages name it."""
        return "the tensor-parallel workers" if self.spec.world > 1 else "the engine process"

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out.update(tensor_parallel_size=self.spec.world, worker_restarts=self.restarts)
        return out

    # -- requests ------------------------------------------------------------------------
    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if self.broken:
            raise EngineError(self.broken)
        check_prompt_ids(prompt_ids, self.model_config.vocab_size)
        if self._admission is not None:
            self._admission.check(len(prompt_ids), params.max_tokens)

    def _send(self, command: tuple[str, Any]) -> None:
        with self._send_lock:
            if self._group is None:
                self._pending.append(command)
                return
            try:
                self._group.send(command)
            except WorkerDied:  # rank 0 never got it: it waits for the next group
                self._pending.append(command)

    # -- the reader thread ---------------------------------------------------------------
    def _launch(self) -> WorkerGroup:
        group = WorkerGroup(self.spec, self._standby)
        self._standby = None  # restarts spawn fresh processes
        with self._send_lock:
            if self._stopping.is_set():
                raise WorkerDied(f"{self.workers} was shut down")
            self._starting = group  # from here on `shutdown` aborts it
        try:
            group.start()
            message = group.recv(self.start_timeout_s)
            if message is None or message[0] != "ready":
                raise WorkerDied(f"{self.workers} did not start within {self.start_timeout_s:.0f} s")
        except WorkerDied:
            group.kill()
            raise
        finally:
            with self._send_lock:
                self._starting = None
        self.info = message[1]
        with self._lock:
            self._stats = dict(self.info.get("stats") or {})  # a new core's, until its first step
        cfg = self.model_config
        loops = cfg.loop_num - 1 if cfg.is_loop else 0
        keep = max(cfg.loop_window_size - 1, 0) if loops else 0
        self._admission = Admission(self.info["config"], loops, keep, cfg.max_position_embeddings)
        log.info("engine up: %d process(es) on %s, all-reduce %s, %s", self.spec.world,
                 self.info["device"], self.info["all_reduce"], self.info["pool"] or self.info["config"])
        return group

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            group = self._group
            if group is None:  # stopped while restarting, or gave up
                break
            try:
                message = group.recv(1.0)
            except WorkerDied as exc:
                if self._stopping.is_set():
                    break
                self._recover(str(exc))
                last = time.monotonic()
                continue
            if message is not None:
                last = time.monotonic()
                self._handle(message)
            elif self._live_requests() and time.monotonic() - last > self.stall_timeout_s:
                self._recover(f"{group.who(0)} sent nothing for {self.stall_timeout_s:.0f} s")
                last = time.monotonic()
        if self.broken:
            self._end_all("error", self.broken)
        else:
            self._end_all("cancelled", None)
        with self._send_lock:
            group, self._group = self._group, None
        if group is not None:
            group.stop(timeout=10.0)

    def _handle(self, message: tuple) -> None:
        if message[0] != "updates":
            return
        _, updates, stats = message
        for request_id, tokens, output in updates:
            self._deliver(request_id, tokens, output)
        with self._lock:
            self._stats = stats

    def _recover(self, reason: str) -> None:
        """Fail what the dead group held, then start a new group (holding new commands meanwhile)."""
        with self._send_lock:
            group, self._group = self._group, None
            # Requests rank 0 never got wait for the new group, as do those submitted from now on.
            waiting = {arg[0] for kind, arg in self._pending if kind == "add"}
            held = [rid for rid in self._live_requests() if rid not in waiting]
            self._pending = [(kind, arg) for kind, arg in self._pending if (arg[0] if kind == "add" else arg) in waiting]
        log.error("%s; failing %d request(s) and restarting %s", reason, len(held), self.workers)
        if group is not None:
            group.kill()
        message = f"{reason}; " + ("the engine restarted its tensor-parallel workers" if self.spec.world > 1
                                   else "the engine process was restarted")
        for request_id in held:
            self._deliver(request_id, [], RequestOutput(request_id, 0, [], "error", error=message))
        for attempt in range(self.max_restarts):
            if self._stopping.is_set():
                return
            try:
                new = self._launch()
            except WorkerDied as exc:
                if self._stopping.is_set():
                    return
                log.error("restarting %s failed (%d/%d): %s", self.workers, attempt + 1, self.max_restarts, exc)
                self._stopping.wait(min(2.0 ** attempt, 30.0))
                continue
            with self._send_lock:
                stopped = self._stopping.is_set()  # shut down just as it became ready
                if not stopped:
                    self._group = new
                    pending, self._pending = self._pending, []
            if stopped:
                new.kill()
                return
            self.restarts += 1
            for command in pending:
                self._send(command)
            return
        self.broken = f"{reason}; restarting {self.workers} failed {self.max_restarts} times"

    def _end_all(self, reason: str, error: str | None) -> None:
        for request_id in self._live_requests():
            self._deliver(request_id, [], RequestOutput(request_id, 0, [], reason, error=error))
