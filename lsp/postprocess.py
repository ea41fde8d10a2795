"""Clean a raw model completion before an editor shows it."""

from __future__ import annotations


def _first_meaningful_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def clean_completion(raw: str, suffix: str, max_lines: int) -> str:
    """Drop undecodable bytes, keep at most `max_lines` lines, stop where the completion starts repeating the code
    that already follows the cursor, and drop trailing blank lines."""
    # U+FFFD stands for bytes that are not valid UTF-8 on their own: never worth inserting.
    lines = raw.replace("\ufffd", "").split("\n")[:max_lines]
    after = _first_meaningful_line(suffix.split("\n", 1)[1] if "\n" in suffix else "")
    if after:
        for i, line in enumerate(lines[1:], start=1):
            if line.strip() == after:
                lines = lines[:i]
                break
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    return text if text.strip() else ""
