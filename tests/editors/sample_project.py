"""The sample project the editors open: the demo's, committed to a fresh git repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import git

SAMPLE = Path(__file__).resolve().parents[2] / "lsp" / "cli" / "demo_project"


def make_sample_project(root: Path) -> Path:
    """The bundled sample project (with its smelly pricing module), committed to a new repo."""
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    repo = git.Repo.init(root)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test")
        cw.set_value("user", "email", "test@example.com")
    repo.index.add(sorted(p.name for p in root.iterdir() if p.is_file()))
    repo.index.commit("sample project")
    return root
