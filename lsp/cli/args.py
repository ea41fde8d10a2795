"""The argument parser, the argument types and the source-file reader shared by the
subcommands, and the one-line error report. Positions on the command line are 1-based lines
and columns, like compiler messages.

Every user error is one line on stderr and exit code 2, argparse's own errors included.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from loopls.context.files import is_regular_file

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (argparse prints the usage first, over many)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argv may hold line breaks
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(message: str, prog: str = "loopls", code: int = 2) -> int:
    """Report a user error on one line; the exit code for it (2 unless told)."""
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return code


def os_error(exc: OSError) -> str:
    """An OSError as `path: reason`, without the errno."""
    if exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc)


def parse_location(spec: str) -> tuple[Path, int, int]:
    path, _, rest = spec.rpartition(":")
    path, _, line = path.rpartition(":")
    if not path or not line.isdecimal() or not rest.isdecimal():
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    return Path(path), int(line), int(rest)


def parse_host_port(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not port.isdecimal() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port from 0 to 65535, got {spec!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.upper()


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (whether the device exists is checked when the model loads)."""
    kind, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdecimal()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def read_source(path: Path) -> str:
    """A source file as text. Missing, unreadable, non-regular (folders, FIFOs, devices),
    binary and non-UTF-8 files are refused with a one-line ValueError naming the file."""
    try:
        if not is_regular_file(path) and path.exists():  # a FIFO would block the read forever
            raise ValueError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, expected a source file")
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(os_error(exc)) from None
    if b"\0" in data[:8192]:
        raise ValueError(f"{path}: binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
