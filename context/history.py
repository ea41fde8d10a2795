"""Git history in one pass: `git log --name-only -z` through GitPython.

One process for the whole history (Commit.stats would spawn one per commit). Paths are
repository-relative with forward slashes; commits come newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_RECORD, _FIELD = "\x1e", "\x1f"


@dataclass(frozen=True)
class Commit:
    sha: str
    timestamp: int  # author time, seconds since the epoch
    author: str
    files: tuple[str, ...]


def open_repo(root: Path):
    """The git.Repo containing `root`, or None when it is not in a git work tree."""
    import git

    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def read_history(root: Path, max_commits: int | None = None, rev: str = "HEAD") -> list[Commit]:
    """Commits reachable from `rev` with the files each touched (merges skipped: their file
    lists repeat their parents'). An empty list outside git or in a repo without commits."""
    import git

    repo = open_repo(root)
    if repo is None:
        return []
    args = ["--name-only", "-z", "--no-renames", "--no-merges", f"--format={_RECORD}%H{_FIELD}%at{_FIELD}%an"]
    if max_commits:
        args.append(f"--max-count={max_commits}")
    try:
        out = repo.git.log(rev, *args)
    except git.GitCommandError:  # no commits yet, or an unknown rev
        return []
    commits = []
    for record in out.split(_RECORD)[1:]:
        header, _, names = record.partition("\0")
        sha, timestamp, author = header.split(_FIELD)
        files = tuple(f.strip("\n") for f in names.split("\0") if f.strip("\n"))
        commits.append(Commit(sha, int(timestamp), author, files))
    return commits
