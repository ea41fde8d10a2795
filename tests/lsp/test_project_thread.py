"""The project thread's two lanes (`lsp/project_thread.py`) and the bounded explainContext
answers built on it (`lsp/explanations.py`), with real threads and a real event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from loopls.lsp.explanations import Explanations
from loopls.lsp.project_thread import ProjectThread


@pytest.fixture
def thread():
    worker = ProjectThread("test-project")
    yield worker
    worker.shutdown()


def _blocked(thread: ProjectThread) -> threading.Event:
    """A task that runs until the returned event is set, so that what follows queues."""
    release, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(10)

    thread.submit(block)
    assert started.wait(10)
    return release


def test_changes_run_in_order_and_reads_overtake_queued_changes(thread):
    order: list[str] = []
    release = _blocked(thread)
    changes = [thread.submit(order.append, f"change {i}") for i in range(3)]
    read = thread.submit_read(order.append, "read")
    assert thread.queued() == 4
    release.set()
    for future in (*changes, read):
        future.result(10)
    assert order == ["read", "change 0", "change 1", "change 2"]
    assert thread.queued() == 0


def test_errors_reach_the_caller_and_the_thread_goes_on(thread):
    failed = thread.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(10)
    assert thread.submit_read(lambda: "still here").result(10) == "still here"


def test_shutdown_cancels_what_is_queued(thread):
    release = _blocked(thread)
    queued = [thread.submit(lambda: None), thread.submit_read(lambda: None)]
    thread.shutdown()
    release.set()
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError):
        thread.submit(lambda: None)


def _maker(results: list[dict], delay: float = 0.0):
    """An assembly that takes `delay` seconds and counts its calls."""
    async def make() -> dict:
        await asyncio.sleep(delay)
        results.append({"n": len(results) + 1})
        return results[-1]

    return lambda: make()


async def test_the_same_question_is_answered_from_the_last_explanation():
    explanations, made = Explanations(wait_s=0.05), []
    key = (1, (10, 4), ("budget",))
    first = await explanations.get("file:///a.py", key, _maker(made))
    again = await explanations.get("file:///a.py", key, _maker(made))
    assert first == again == {"n": 1} and len(made) == 1


async def test_a_slow_assembly_of_the_same_version_answers_the_last_one_marked_stale():
    explanations, made = Explanations(wait_s=0.05), []
    await explanations.get("file:///a.py", (1, (10, 4), ()), _maker(made))
    answer = await explanations.get("file:///a.py", (1, (20, 0), ()), _maker(made, delay=0.5))
    assert answer == {"n": 1, "stale": True, "position": {"line": 10, "character": 4}}
    await asyncio.sleep(0.7)  # the fresh one finishes in the background and is kept
    assert await explanations.get("file:///a.py", (1, (20, 0), ()), _maker(made)) == {"n": 2}
    assert len(made) == 2 and len(explanations) == 1


async def test_a_new_version_waits_for_its_own_assembly():
    explanations, made = Explanations(wait_s=0.05), []
    await explanations.get("file:///a.py", (1, (10, 4), ()), _maker(made))
    answer = await explanations.get("file:///a.py", (2, (10, 4), ()), _maker(made, delay=0.2))
    assert answer == {"n": 2}


async def test_an_older_version_finishing_late_does_not_replace_a_newer_one():
    explanations, made = Explanations(wait_s=0.05), []
    slow = asyncio.ensure_future(explanations.get("file:///a.py", (1, (0, 0), ()), _maker(made, delay=0.3)))
    await asyncio.sleep(0.05)
    newer = await explanations.get("file:///a.py", (2, (0, 0), ()), _maker(made))
    await slow
    assert await explanations.get("file:///a.py", (2, (0, 0), ()), _maker(made)) == newer
    assert len(made) == 2


async def test_a_closed_document_keeps_nothing():
    explanations, made = Explanations(wait_s=0.05), []
    job = asyncio.ensure_future(explanations.get("file:///a.py", (1, (0, 0), ()), _maker(made, delay=0.1)))
    await asyncio.sleep(0.02)
    explanations.forget("file:///a.py")
    await job
    assert len(explanations) == 0


def test_a_hold_keeps_changes_waiting_but_not_reads(thread):
    order: list[str] = []
    with thread.hold():
        change = thread.submit(order.append, "change")
        read = thread.submit_read(order.append, "read")
        read.result(10)
        assert not change.done()  # a generation may still be shown: the smell check waits
    change.result(10)
    assert order == ["read", "change"]


def test_a_hold_never_starves_the_changes(thread, monkeypatch):
    monkeypatch.setattr("loopls.lsp.project_thread.MAX_HOLD_S", 0.2)
    with thread.hold():
        change = thread.submit(lambda: "done")
        assert change.result(10) == "done"  # after MAX_HOLD_S, held or not
