"""Shared helpers for the context-engine tests: real git repositories made with GitPython."""

from __future__ import annotations

import time
from pathlib import Path

import git


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_repo(root: Path, commits: list[dict[str, str]], start: int = 1_700_000_000) -> git.Repo:
    """A repository with one commit per dict (path -> new content), an hour apart."""
    repo = git.Repo.init(root)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test")
        cw.set_value("user", "email", "test@example.com")
    for i, files in enumerate(commits):
        write(root, files)
        repo.index.add(sorted(files))
        stamp = f"{start + 3600 * i} +0000"
        repo.index.commit(f"commit {i}", author_date=stamp, commit_date=stamp)
    return repo


def tokenizer(checkpoint: Path):
    from loopls.engine.model.tokenizer import Tokenizer

    return Tokenizer.from_folder(checkpoint)


def wait_mtime_tick() -> None:
    """Let the file system's mtime move on, so that a rewrite is seen as a change."""
    time.sleep(0.01)
