"""Change coupling from git history: co-change support and confidence, recency, churn.

Built from the single `git log` pass of `history.read_history`. Large commits (mass renames,
formatting sweeps) say nothing about coupling and are skipped, as code-maat does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .history import Commit

MAX_FILES_PER_COMMIT = 30


@dataclass(frozen=True)
class Coupling:
    path: str
    support: int  # commits that changed both files
    confidence: float  # support / commits that changed the query file


class CoChange:
    def __init__(self, commits: list[Commit], max_files: int = MAX_FILES_PER_COMMIT) -> None:
        self.commits = commits  # newest first
        self._by_file: dict[str, list[int]] = defaultdict(list)
        self.churn: Counter[str] = Counter()
        self.last_changed: dict[str, int] = {}
        for i, commit in enumerate(commits):
            for path in commit.files:
                self.churn[path] += 1
                self.last_changed.setdefault(path, commit.timestamp)
                if len(commit.files) <= max_files:
                    self._by_file[path].append(i)

    def coupled(self, path: str, min_support: int = 1) -> list[Coupling]:
        """Files changed together with `path`, by confidence then support then path."""
        mine = self._by_file.get(path, [])
        if not mine:
            return []
        shared: Counter[str] = Counter()
        for i in mine:
            shared.update(f for f in self.commits[i].files if f != path)
        out = [Coupling(f, n, n / len(mine)) for f, n in shared.items() if n >= min_support]
        out.sort(key=lambda c: (-c.confidence, -c.support, c.path))
        return out

    def recent_commits(self, path: str, limit: int = 5) -> list[Commit]:
        """The latest commits that touched `path` (large ones included), newest first."""
        return [c for c in self.commits if path in c.files][:limit]

    def by_recency(self) -> list[str]:
        """Every file, most recently changed first."""
        return sorted(self.last_changed, key=lambda p: (-self.last_changed[p], p))
