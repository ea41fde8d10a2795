"""Processes found by a mark in their environment: a server (or a model host) started with a
unique `LOOPLS_TEST_MARK`-style variable, and every process it started, which inherit it."""

from __future__ import annotations

import time
from pathlib import Path


def marked(mark: str) -> list[int]:
    """Processes whose environment holds `mark`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours
                continue
    return found


def gone_within(mark: str, seconds: float) -> bool:
    """Whether every marked process has ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while marked(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
