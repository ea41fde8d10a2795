"""Request priorities: plain data, without torch (the language server sets them on its
requests without importing the engine)."""

from __future__ import annotations

import enum


class Priority(enum.IntEnum):
    """Lower value is served first: what the user is waiting on beats what they asked for
    beats the line they are typing on (its prompt prefilled ahead of their pause) beats what
    runs in the background."""

    INLINE = 0
    CODE_ACTION = 1
    TYPING = 2
    BACKGROUND = 3
