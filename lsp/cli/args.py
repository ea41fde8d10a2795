"""Argument types shared by the subcommands. Positions on the command line are 1-based lines
and columns, like compiler messages."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_location(spec: str) -> tuple[Path, int, int]:
    try:
        path, line, col = spec.rsplit(":", 2)
        return Path(path), int(line), int(col)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL (1-based), got {spec!r}") from None
