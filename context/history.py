"""Git history in one pass: `git log --name-only -z` through GitPython.

One process for the whole history (Commit.stats would spawn one per commit). Paths are
repository-relative with forward slashes; commits come newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import git

_RECORD, _FIELD = "\x1e", "\x1f"
GIT_TIMEOUT_S = 60.0  # a git call taking longer than this is killed (a hung file system, a lock)
# What a git call may raise: git failed or was killed, or could not be started.
GIT_ERRORS = (git.GitCommandError, OSError, ValueError)


def run_git(repo, command: str, *args: str, **kwargs) -> str:
    """`git <command> <args>` in `repo` (GitPython spelling: `ls_files` runs `git ls-files`),
    killed after GIT_TIMEOUT_S; a kill or a failure raises one of GIT_ERRORS."""
    return getattr(repo.git, command)(*args, kill_after_timeout=GIT_TIMEOUT_S, **kwargs)


@dataclass(frozen=True)
class Commit:
    sha: str
    timestamp: int  # author time, seconds since the epoch
    author: str
    files: tuple[str, ...]


def open_repo(root: Path):
    """The git.Repo containing `root`, or None when it is not in a git work tree."""
    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def read_history(root: Path, max_commits: int | None = None, rev: str = "HEAD") -> list[Commit]:
    """Commits reachable from `rev` with the files each touched (merges skipped: their file
    lists repeat their parents'). An empty list outside git or in a repo without commits."""
    repo = open_repo(root)
    if repo is None:
        return []
    args = ["--name-only", "-z", "--no-renames", "--no-merges", f"--format={_RECORD}%H{_FIELD}%at{_FIELD}%an"]
    if max_commits:
        args.append(f"--max-count={max_commits}")
    try:
        out = run_git(repo, "log", rev, *args)
    except GIT_ERRORS:  # no commits yet, or an unknown rev
        return []
    commits = []
    for record in out.split(_RECORD)[1:]:
        header, _, names = record.partition("\0")
        sha, timestamp, author = header.split(_FIELD)
        files = tuple(f.strip("\n") for f in names.split("\0") if f.strip("\n"))
        commits.append(Commit(sha, int(timestamp), author, files))
    return commits


LineRange = tuple[int, int]  # 0-based, inclusive
WHOLE_FILE: LineRange = (0, 1 << 30)


def uncommitted_changes(root: Path) -> dict[str, list[LineRange]]:
    """Lines changed in the work tree and index against HEAD, per file (paths relative to the
    repository's top folder; new-side line ranges). Untracked files count as wholly changed.
    Empty outside git; before the first commit every file is untracked-like."""
    repo = open_repo(root)
    if repo is None:
        return {}
    changes: dict[str, list[LineRange]] = {}
    try:
        diff = run_git(repo, "diff", "HEAD", "--unified=0", "--no-color", "--no-ext-diff", "--no-renames")
    except GIT_ERRORS:  # no HEAD yet
        diff = ""
        try:
            tracked = run_git(repo, "ls_files", "-z").split("\0")
        except GIT_ERRORS:
            tracked = []
        changes.update({p: [WHOLE_FILE] for p in tracked if p})
    _parse_unified_diff(diff, changes)
    try:
        untracked = run_git(repo, "ls_files", "-z", "--others", "--exclude-standard").split("\0")
    except GIT_ERRORS:
        untracked = []
    changes.update({p: [WHOLE_FILE] for p in untracked if p})
    return changes


def _parse_unified_diff(diff: str, changes: dict[str, list[LineRange]]) -> None:
    path = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            target = line[4:]
            path = target[2:] if target.startswith("b/") else None  # /dev/null: deleted
        elif line.startswith("@@") and path is not None:
            new = line.split(" ")[2]  # "+c,d"
            start, _, count = new[1:].partition(",")
            first, n = int(start), int(count) if count else 1
            row = max(first - 1, 0)
            changes.setdefault(path, []).append((row, row + max(n, 1) - 1))
