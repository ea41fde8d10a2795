"""The worker processes of an engine (one, or one per tensor-parallel rank), seen from the
main process.

`WorkerGroup` spawns one process per rank (torch.multiprocessing, spawn start method, so
each initialises CUDA itself), wires the pipes (rank 0 <-> main, rank 0 <-> each other
rank, each other rank -> main for its last words), and watches them: a message from rank 0
or the exit of any rank, whichever comes first. A rank that exits or reports an error ends
the group, since the others are then stuck in a collective or out of step; `kill` ends
every process and the owner starts a new group.

`abort` may come from any thread, also while `start` runs: it waits for the processes being
spawned (a process killed between its fork and the parent's write of its spawn data would
read EOF there and print a traceback; one spawned after the abort would be left running),
kills them, and a group aborted before it started refuses to start. A group of one may run
in a process started ahead of it (`StandbyProcess`, standby.py), which has imported the
engine by then.
"""

from __future__ import annotations

import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

import torch.multiprocessing as mp

from .ranks import post, take
from .standby import StandbyProcess
from .workers import WorkerSpec, worker_main


class WorkerDied(RuntimeError):
    """A worker process failed or exited; the message says which and why."""


class WorkerGroup:
    def __init__(self, spec: WorkerSpec, standby: StandbyProcess | None = None) -> None:
        self.spec = spec
        self._standby = standby  # a process already importing the engine, for a group of one
        self.procs: list[Any] = []
        self.conn: Connection | None = None  # duplex pipe to rank 0
        self._reports: list[Connection] = []  # last words of ranks > 0
        self._lock = threading.Lock()  # start and abort, one at a time
        self._aborted = False

    def start(self) -> None:
        with self._lock:
            if self._aborted:
                raise WorkerDied(f"{self.who(0)} was stopped before it started")
            self._start()

    def _start(self) -> None:
        if self._standby is not None and self.spec.world == 1 and self._adopt(self._standby):
            return
        ctx = mp.get_context("spawn")
        world, port = self.spec.world, _free_port()
        to_followers, from_rank0 = zip(*(ctx.Pipe(duplex=True) for _ in range(world - 1))) if world > 1 else ((), ())
        self.conn, rank0_end = ctx.Pipe(duplex=True)
        children = [rank0_end, *from_rank0, *to_followers]
        procs = [ctx.Process(target=worker_main, args=(0, self.spec, port, list(to_followers), rank0_end),
                             name="loopls-tp-rank0" if world > 1 else "loopls-engine", daemon=True)]
        for rank in range(1, world):
            report, report_end = ctx.Pipe(duplex=False)
            self._reports.append(report)
            children.append(report_end)
            procs.append(ctx.Process(target=worker_main, args=(rank, self.spec, port, [from_rank0[rank - 1]], report_end),
                                     name=f"loopls-tp-rank{rank}", daemon=True))
        try:
            for proc in procs:
                proc.start()
                self.procs.append(proc)  # started: abort and kill reach it
        finally:
            for end in children:  # the children hold these now; closing ours makes EOF visible
                end.close()

    def _adopt(self, standby: StandbyProcess) -> bool:
        """Run rank 0 in `standby` (started ahead, standby.py); False if it is gone or taken."""
        taken = standby.hand_over(self.spec, _free_port())
        if taken is None:
            return False
        proc, self.conn = taken
        self.procs.append(proc)
        return True

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def send(self, message: tuple) -> None:
        """A message to rank 0 (raises WorkerDied if it is gone)."""
        try:
            post(self.conn, message)
        except (BrokenPipeError, OSError, AttributeError) as exc:
            raise WorkerDied(f"{self.who(0)} is gone ({exc})") from None

    def recv(self, timeout: float | None = None) -> tuple | None:
        """The next message from rank 0; None after `timeout` seconds without one. Raises
        WorkerDied if a worker reported an error or exited."""
        ready = wait([self.conn, *self._reports, *(p.sentinel for p in self.procs)], timeout)
        if not ready:
            return None
        reported = ""
        if self.conn in ready:
            try:
                message = take(self.conn)
            except (EOFError, OSError):
                message = None
            if message is not None and message[0] != "error":
                return message
            if message is not None:
                reported = self._error_text(message)
        raise WorkerDied(self.describe_death(reported))

    def describe_death(self, reported: str = "") -> str:
        """What went wrong. A rank killed by a signal is named first: the errors the others
        report then (a collective whose peer vanished) are its consequence."""
        deadline = time.monotonic() + 1.0  # let the others notice, report and exit
        while time.monotonic() < deadline and all(p.exitcode is None for p in self.procs):
            time.sleep(0.05)
        for rank, proc in enumerate(self.procs):
            if proc.exitcode is not None and proc.exitcode < 0:
                signal = -proc.exitcode
                why = " (SIGKILL: killed by hand, or by the system when memory ran out)" if signal == 9 else ""
                return f"{self.who(rank)} (pid {proc.pid}) was killed by signal {signal}{why}"
        if reported:
            return reported
        for report in self._reports:
            if report.poll(0.2):
                try:
                    return self._error_text(take(report))
                except (EOFError, OSError):
                    continue
        for rank, proc in enumerate(self.procs):
            if proc.exitcode is not None:
                return f"{self.who(rank)} (pid {proc.pid}) exited with code {proc.exitcode}"
        return f"{self.who(0) if self.spec.world == 1 else 'a tensor-parallel worker'} stopped answering"

    def who(self, rank: int) -> str:
        """A rank as messages name it."""
        return f"tensor-parallel rank {rank}" if self.spec.world > 1 else "the engine process"

    def _error_text(self, message: tuple) -> str:
        _, rank, text, _trace = message
        return f"{self.who(rank)} failed: {text}"

    def alive(self) -> bool:
        return bool(self.procs) and all(p.is_alive() for p in self.procs)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask rank 0 to stop (it stops the others), wait, then kill what is left."""
        if self.conn is not None and self.procs and self.procs[0].is_alive():
            try:
                post(self.conn, ("stop", None))
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
        self.kill()

    def abort(self) -> None:
        """Kill every process now, from any thread (a start in progress first spawns all of
        its processes, then they are killed; a group not started yet never starts); the
        thread reading the group sees them exit (`recv` raises WorkerDied) and cleans up."""
        with self._lock:
            self._aborted = True
            for proc in self.procs:
                if proc.is_alive():
                    proc.kill()

    def kill(self) -> None:
        self.abort()
        for proc in self.procs:
            proc.join(10)
        for conn in [self.conn, *self._reports]:
            if conn is not None:
                conn.close()
        self.procs, self.conn, self._reports = [], None, []


def run_driver(spec: WorkerSpec, timeout: float) -> Any:
    """Start a group whose rank 0 runs `spec.driver`, wait for its result, stop the group.
    Raises WorkerDied (also after `timeout` seconds without a result)."""
    if spec.driver is None:
        raise ValueError("run_driver needs a spec with a driver")
    group = WorkerGroup(spec)
    group.start()
    try:
        message = group.recv(timeout)
    except BaseException:
        group.kill()
        raise
    if message is None:
        group.kill()  # stuck or still busy: asking it to stop would only wait longer
        raise WorkerDied(f"no result from the tensor-parallel workers within {timeout:.0f} s")
    group.stop(timeout=30.0)
    return message[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
