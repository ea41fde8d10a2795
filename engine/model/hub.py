"""Resolve a hub id (`owner/name`, optionally `owner/name@revision`) to a snapshot folder in
the local Hugging Face cache, without any network access.

The cache layout is the one `huggingface_hub` writes:
`<cache>/models--owner--name/refs/<branch>` holds a commit hash and
`<cache>/models--owner--name/snapshots/<hash>/` holds the files (usually symlinks into blobs/).
The cache folder is read from the environment at call time, so a changed `HF_HUB_CACHE`
applies without re-importing anything.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class HubError(ValueError):
    """A hub id that is not in the local cache."""


def hub_cache_dir() -> Path:
    """$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def resolve_hub_id(hub_id: str) -> Path:
    """The cached snapshot folder of `hub_id`; HubError with what was looked at if absent."""
    repo, _, revision = hub_id.partition("@")
    revision = revision or "main"
    if not _HUB_ID.match(repo):
        raise HubError(f"{hub_id!r}: not a hub id of the form owner/name")
    cache = hub_cache_dir()
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    hint = "(loopls never downloads; fetch it first with `hf download " + repo + "`)"
    if not repo_dir.is_dir():
        raise HubError(f"{hub_id}: not a folder and not in the local Hugging Face cache {cache} {hint}")
    commit = revision
    ref = repo_dir / "refs" / revision
    if not _COMMIT.match(revision):
        if not ref.is_file():
            raise HubError(f"{hub_id}: {repo_dir} has no refs/{revision} {hint}")
        commit = ref.read_text(encoding="utf-8").strip()
    snapshot = repo_dir / "snapshots" / commit
    if not (snapshot / "config.json").is_file():
        raise HubError(f"{hub_id}: snapshot {snapshot} is missing or has no config.json {hint}")
    return snapshot
