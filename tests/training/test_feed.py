"""The batches a phase trains on: replayed rows (a second epoch) in a schedule fixed by the
seed, each row trained on at most twice, the same batches whatever the pace of the rows."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

from training.feed import Feed, replays


def _batches(rows: int, length: int, delay: float = 0.0):
    """Batch b holds rows whose every id is the row's global number, labels its negative."""
    b = 0
    while True:
        if delay:
            time.sleep(delay)
        ids = torch.arange(b * rows, (b + 1) * rows, dtype=torch.int32)[:, None].expand(rows, length).clone()
        yield ids, -ids.long()
        b += 1


def _take(feed: Feed, n: int) -> list[tuple[list[int], bool]]:
    out = []
    for _ in range(n):
        ids, labels, again = next(feed)
        assert torch.equal(labels, -ids.long())  # a row's labels travel with it
        out.append((ids[:, 0].tolist(), again))
    feed.close()
    return out


def test_the_schedule_replays_the_given_share_after_the_lead() -> None:
    flags = [replays(i, 0.5, 10) for i in range(110)]
    assert not any(flags[:10]) and sum(flags) == 50 and flags[10:14] == [False, True, False, True]
    assert sum(replays(i, 0.25, 0) for i in range(400)) == 100
    assert not any(replays(i, 0.0, 0) for i in range(50))


def test_each_row_is_trained_on_at_most_twice_and_replays_come_from_earlier_steps() -> None:
    steps = _take(Feed(_batches(4, 3), 4, 0.5, 5, seed=0, phase="short"), 200)
    seen: Counter[int] = Counter()
    for rows, again in steps:
        if again:
            assert all(seen[r] == 1 for r in rows)  # delivered fresh before, not replayed yet
        else:
            assert all(seen[r] == 0 for r in rows)
        seen.update(rows)
    assert max(seen.values()) == 2
    assert sum(again for _, again in steps) == (200 - 5) // 2
    fresh_rows = [r for rows, again in steps if not again for r in rows]
    assert fresh_rows == list(range(len(fresh_rows)))  # fresh rows in the builders' order


def test_the_batches_depend_on_the_seed_and_phase_not_on_the_pace() -> None:
    fast = _take(Feed(_batches(4, 3), 4, 0.5, 3, seed=1, phase="short"), 40)
    slow = _take(Feed(_batches(4, 3, delay=0.003), 4, 0.5, 3, seed=1, phase="short", depth=2), 40)
    other = _take(Feed(_batches(4, 3), 4, 0.5, 3, seed=2, phase="short"), 40)
    assert fast == slow
    assert fast != other
    # a replayed batch mixes rows of several earlier batches (shuffled, not a batch repeated)
    replayed = [rows for rows, again in fast if again]
    assert any(len({r // 4 for r in rows}) > 1 for rows in replayed)


def test_no_reuse_passes_the_rows_through() -> None:
    steps = _take(Feed(_batches(2, 3), 2, 0.0, 0, seed=0, phase="long"), 10)
    assert [rows for rows, _ in steps] == [[2 * b, 2 * b + 1] for b in range(10)]
    assert not any(again for _, again in steps)


def test_a_failing_row_builder_is_reported_and_more_than_one_epoch_refused() -> None:
    def broken():
        yield torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, 3, dtype=torch.long)
        raise ValueError("bad file")

    feed = Feed(broken(), 2, 0.5, 1, seed=0, phase="short")
    next(feed)
    with pytest.raises(RuntimeError, match="building training rows failed"):
        next(feed)
    feed.close()
    with pytest.raises(ValueError, match="at most twice"):
        Feed(_batches(2, 3), 2, 0.75, 1, seed=0, phase="short")
