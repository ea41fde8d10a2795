"""The server's watch over full garbage collections (lsp/collector.py)."""

from __future__ import annotations

import gc

import pytest

from loopls.lsp.collector import Collector


@pytest.fixture
def collector():
    watch = Collector()
    watch.watch()
    yield watch
    watch.unwatch()
    gc.unfreeze()  # the rest of the test session collects as before


def test_full_collections_are_counted_and_timed_and_young_ones_are_not(collector):
    gc.collect(0)
    gc.collect(1)
    assert collector.full_collections == 0
    gc.collect()
    gc.collect(2)
    assert collector.full_collections == 2 and collector.longest_full_s > 0
    collector.unwatch()
    gc.collect()
    assert collector.as_json()["fullCollections"] == 2


def test_frozen_objects_are_out_of_full_collections_and_still_freed(collector):
    long_lived = [[i] for i in range(20_000)]
    collector.freeze_long_lived()
    frozen = gc.get_freeze_count()
    assert frozen >= len(long_lived) and collector.as_json()["freezes"] == 1
    assert all(gc.is_tracked(x) for x in long_lived[:10]) and not any(x is long_lived[0] for x in gc.get_objects(2))
    del long_lived  # reference counting still frees frozen objects
    assert gc.get_freeze_count() <= frozen - 20_000
