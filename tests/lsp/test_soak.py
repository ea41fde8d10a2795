"""Soak, with a small fixed budget: a thousand requests on a growing document (the driver of
`bench/soak.py`: a real client over stdio, keystrokes with automatic and explicit inline
completions, cancellations, pulled diagnostics and status requests). Fails on a leak:

- a structure the server keeps per document or per request (`loopls/status` stats.tracked:
  requests in flight, per-document completion state, queued project work, open buffers,
  remembered token encodings) growing with the number of requests;
- the server's RSS growing over the second half of the run by more than a margin no honest
  run comes near (Python's allocator moves by a few MB; a leaked copy of the 60 KB document
  per keystroke would add 25 MB).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from soak import run_soak  # noqa: E402

from loopls.context.packing import ID_CACHE_CHARS  # noqa: E402
from worst_latency import make_project  # noqa: E402

REQUESTS = 1000
EVERY = 200
RSS_MARGIN_MB = 25
PER_DOCUMENT = ("documents", "project_documents", "latest", "lines", "warming", "cached_documents", "debounced_documents",
                "push_tasks", "smell_results", "smell_checks")


@pytest.mark.timeout(600)
def test_a_thousand_requests_leave_nothing_behind(tmp_path: Path, tiny_checkpoint: Path) -> None:
    cache = Path(os.environ["LOOPLS_CACHE_DIR"])  # the session's, where the model was made
    windows = asyncio.run(run_soak(make_project(tmp_path), cache, REQUESTS, EVERY, lines=2000))
    assert len(windows) == REQUESTS // EVERY
    assert sum(w.errors for w in windows) == 0
    for w in windows:
        tracked = w.tracked
        assert all(tracked[key] <= 1 for key in PER_DOCUMENT), tracked  # one document was open
        assert tracked["requests"] <= 1, tracked  # the status request reading these counts
        assert tracked["running"] == tracked["project_queue"] == 0, tracked
        assert tracked["result_types"] == 0, tracked
        assert tracked["packed_chars"] + tracked["project_packed_chars"] <= 2 * ID_CACHE_CHARS, tracked
    half = windows[len(windows) // 2]
    growth = windows[-1].rss_mb - half.rss_mb
    assert growth < RSS_MARGIN_MB, [(w.requests, w.rss_mb) for w in windows]
