"""Inline suppression comments.

- `loopls: ignore` on a line silences every finding that starts on that line; on a line of its
  own, it silences the next line instead (for a function: put it on or above the `def` line).
- `loopls: ignore[LS101, too-many-arguments]` silences only those checks (codes or slugs).
- `loopls: ignore-file` (optionally with a list) anywhere in a file silences the whole file.
Any comment syntax works: the marker is found in the raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .checks import Finding, check_for

_MARKER = re.compile(r"loopls:\s*ignore(-file)?(?:\[([^\]]*)\])?")
_ALL = frozenset({"*"})


@dataclass
class Suppressions:
    lines: dict[int, frozenset[str]] = field(default_factory=dict)  # 0-based row -> codes ("*" = all)
    file: frozenset[str] = frozenset()

    def silences(self, finding: Finding) -> bool:
        code = finding.code
        if "*" in self.file or code in self.file:
            return True
        codes = self.lines.get(finding.start[0])
        return codes is not None and ("*" in codes or code in codes)


def _codes(listed: str | None) -> frozenset[str]:
    if not listed:
        return _ALL
    codes = set()
    for item in listed.split(","):
        item = item.strip()
        if item:
            try:
                codes.add(check_for(item).code)
            except KeyError:
                codes.add(item.upper())  # unknown names silence nothing, but do not break the file
    return frozenset(codes) or _ALL


def parse_suppressions(text: str) -> Suppressions:
    found = Suppressions()
    if "loopls:" not in text:
        return found
    for row, line in enumerate(text.splitlines()):
        if "loopls:" not in line:
            continue
        for m in _MARKER.finditer(line):
            codes = _codes(m.group(2))
            if m.group(1):
                found.file = found.file | codes
                continue
            own_line = not line[: m.start()].strip(" \t#/*-;").strip()
            target = row + 1 if own_line else row
            found.lines[target] = found.lines.get(target, frozenset()) | codes
    return found
