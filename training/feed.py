"""The batches one phase trains on, in order.

Rows come from DataLoader worker processes; a thread collects their batches into a queue in
this process, so that rows keep arriving while the main thread compiles the training graphs
or runs steps (the workers' own prefetch is a few batches each). A share of the steps
(`reuse`, at most one half) replays rows trained on once before: a second epoch over them,
drawn at random from those not replayed yet, so that a compiled step, faster than the row
builders, still gets its data. Each row is trained on at most twice.

Which steps replay depends only on the step's index; which rows they replay, on (seed, phase)
and the rows delivered before, which depend on (seed, phase, row index) alone: the batches
are the same for any worker count and any pace.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def replays(step: int, reuse: float, lead: int) -> bool:
    """Whether step `step` (0-based) of a phase replays rows: none in the first `lead` steps,
    then `reuse` of the steps, spread evenly."""
    if step < lead or reuse <= 0:
        return False
    k = step - lead
    return int((k + 1) * reuse + 1e-9) > int(k * reuse + 1e-9)


class Feed:
    """Iterate to get (ids, labels, replayed) for each step of a phase; `close()` when done."""

    def __init__(self, batches: Iterator[Batch], rows: int, reuse: float, lead: int, seed: int, phase: str,
                 depth: int = 512, pin: bool = False) -> None:
        if not 0 <= reuse <= 0.5:
            raise ValueError(f"reuse must be between 0 and 0.5 (each row trained on at most twice), not {reuse}")
        # the iterator is made by the caller, in the main thread: that is where its worker
        # processes are started and its signal handlers set
        self._batches, self._rows, self._reuse, self._lead, self._pin = batches, rows, reuse, max(1, lead), pin
        self._rng = random.Random(f"{seed}:{phase}:replay")
        self._pool: list[Batch] = []  # rows delivered once, not replayed yet
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, name=f"feed-{phase}", daemon=True)
        self._thread.start()

    def _fresh(self) -> Batch:
        ids, labels = next(self._batches)
        # copied out of the workers' shared memory (pinned, when the step copies to a GPU)
        ids, labels = (ids.pin_memory(), labels.pin_memory()) if self._pin else (ids.clone(), labels.clone())
        self._pool.extend(zip(ids, labels))
        return ids, labels

    def _replay(self) -> Batch:
        taken = []
        for _ in range(self._rows):
            j = self._rng.randrange(len(self._pool))
            self._pool[j], self._pool[-1] = self._pool[-1], self._pool[j]
            taken.append(self._pool.pop())
        ids, labels = torch.stack([r[0] for r in taken]), torch.stack([r[1] for r in taken])
        return (ids.pin_memory(), labels.pin_memory()) if self._pin else (ids, labels)

    def _collect(self) -> None:
        step = 0
        try:
            while not self._stop.is_set():
                again = replays(step, self._reuse, self._lead)
                self._put((*self._replay(), True) if again else (*self._fresh(), False))
                step += 1
        except BaseException as exc:  # StopIteration included: handed to the consumer
            self._put(exc)

    def _put(self, item: object) -> None:
        """Queue `item`, waiting while the queue is full, unless the feed is closed meanwhile
        (then the consumer is gone and nobody would take it)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Feed:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        item = self._queue.get()
        if isinstance(item, StopIteration):
            raise StopIteration
        if isinstance(item, BaseException):
            raise RuntimeError("building training rows failed") from item
        return item

    def close(self) -> None:
        """Stop collecting (the thread ends after the batch it is waiting for) and let the
        worker processes go, before the next phase starts its own."""
        self._stop.set()
        self._thread.join()
        self._batches = iter(())
        self._pool.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
