"""Reading files safely: regular files only, within a size limit, never blocking.

Every file loopls reads goes through here. A named pipe, a socket or a device in a workspace
would block `open()` or `read()` forever (a FIFO with no writer) or never end (`/dev/zero`);
they are refused by their type before any byte is read, and the file is opened non-blocking
so that one swapped in between the check and the open is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def is_regular_file(path: str | Path) -> bool:
    """A regular file (symlinks followed); False for FIFOs, sockets, devices, folders, missing."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_regular(path: str | Path, max_bytes: int) -> bytes | None:
    """The bytes of a regular file of at most `max_bytes`, else None (not a regular file, too
    large, unreadable)."""
    if not is_regular_file(path):
        return None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks, size = [], 0
        while size <= max_bytes:  # the file may grow while it is read: stop past the limit
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks) if size <= max_bytes else None
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str | Path, max_bytes: int = 1_000_000) -> str | None:
    """A small text file (ignore files, configuration) as text, or None when unreadable."""
    data = read_regular(path, max_bytes)
    return data.decode("utf-8", errors="replace") if data is not None else None
