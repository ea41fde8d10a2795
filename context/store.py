"""SQLite persistence of per-file symbols, keyed by content hash.

One database per workspace under the cache directory. `symbols` maps a content digest to the
extracted symbols (identical files share a row, and a file that changes back finds its old
row); `paths` remembers each path's size, mtime and digest so that a re-open only reads files
whose stat changed. A store that cannot be opened degrades to no persistence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

# Bump when extraction changes so that old rows are ignored.
SCHEMA_VERSION = 3


def store_path(cache_dir: Path, root: Path) -> Path:
    key = hashlib.sha1(str(root).encode("utf-8")).hexdigest()[:16]
    return cache_dir / "index" / f"{root.name or 'root'}-{key}.sqlite"


class SymbolStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS symbols (digest TEXT PRIMARY KEY, data TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS paths (path TEXT PRIMARY KEY, size INTEGER, "
                       "mtime_ns INTEGER, digest TEXT)")
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.warning("index cache disabled: %s: %s", path, exc)

    @property
    def persistent(self) -> bool:
        return self._db is not None

    def paths(self) -> dict[str, tuple[int, int, str]]:
        if self._db is None:
            return {}
        try:
            rows = self._db.execute("SELECT path, size, mtime_ns, digest FROM paths").fetchall()
        except sqlite3.Error:
            return {}
        return {p: (s, m, d) for p, s, m, d in rows}

    def get(self, digest: str) -> dict | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT data FROM symbols WHERE digest = ?", (digest,)).fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.Error, json.JSONDecodeError):
            return None

    def save(self, symbols: dict[str, dict], paths: dict[str, tuple[int, int, str]]) -> None:
        """Add new symbol rows and replace the path table."""
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR IGNORE INTO symbols VALUES (?, ?)",
                                     [(d, json.dumps(s, separators=(",", ":"))) for d, s in symbols.items()])
                self._db.execute("DELETE FROM paths")
                self._db.executemany("INSERT INTO paths VALUES (?, ?, ?, ?)",
                                     [(p, s, m, d) for p, (s, m, d) in paths.items()])
        except sqlite3.Error as exc:
            log.warning("index cache not written: %s", exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def digest_of(data: bytes, language: str | None) -> str:
    """The cache key of a file's content (the language is part of it: the same bytes in a
    `.py` and a `.txt` file give different symbols)."""
    return f"{SCHEMA_VERSION}:{language or 'text'}:" + hashlib.blake2b(data, digest_size=16).hexdigest()
