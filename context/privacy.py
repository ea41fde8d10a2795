"""Privacy rules: which files are secret-bearing, and redaction of secret-looking strings.

Every text that goes into a prompt passes through `redact` or `redact_pieces` (the detector is
`secrets.find_secrets`), so a key pasted into an ordinary source file never reaches a
backend; `check_prompt` runs the same detector over the finished prompt, and
`inserted_secret` over what a model wants to insert. Redaction keeps line structure intact
(a secret spanning lines becomes one marker and empty lines) so line ranges stay valid.
Detection looks a margin beyond each piece, so a secret cut by a window edge or split by the
cursor is still recognised, and both halves are hidden.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

from .secrets import Finding, find_secrets

REDACTED = "<redacted>"

# Matched against the file name (case-insensitive); any match means the file is never read.
SECRET_FILE_PATTERNS = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "*.kdbx", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", "_netrc", ".pgpass",
    ".npmrc", ".pypirc", ".git-credentials", "credentials", "credentials.*", "*credentials*.json",
    "secrets.*", "*.secret", "*.secrets", "service-account*.json", "*.tfstate", "*.tfvars",
)
SECRET_DIRS = (".ssh", ".aws", ".gnupg", ".docker")
# `.env.example` and friends are templates meant to be shared.
_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def is_secret_path(rel_path: str) -> bool:
    """Whether a workspace-relative path names a secret-bearing file."""
    parts = PurePosixPath(rel_path).parts
    if any(p in SECRET_DIRS for p in parts[:-1]):
        return True
    name = parts[-1].lower() if parts else ""
    if name.endswith(_TEMPLATE_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILE_PATTERNS)


MARGIN = 8192  # characters looked at beyond a piece: more than a private-key block


def _mask(piece: str, marker: bool) -> str:
    """A secret's characters in one piece: a marker where it starts, nothing after; its line
    breaks stay, so line numbers do not move."""
    breaks = _LINE_BREAK.findall(piece)
    return (REDACTED if marker else "") + "".join(breaks)


def redact_pieces(text: str, bounds: list[tuple[int, int]], path: str | None = None) -> list[str]:
    """text[a:b] for each (a, b) in `bounds` (sorted, not overlapping), redacted. Detection runs
    once over the span of all pieces plus a margin, so a secret split between two pieces (by
    the cursor) or cut by their edges is hidden in each."""
    if not bounds:
        return []
    lo = max(0, bounds[0][0] - MARGIN)
    hi = min(len(text), bounds[-1][1] + MARGIN)
    findings = [Finding(f.start + lo, f.end + lo, f.rule) for f in find_secrets(text[lo:hi], path)]
    pieces = []
    for a, b in bounds:
        out, pos = [], a
        for f in findings:
            if f.end <= a or f.start >= b:
                continue
            s, e = max(f.start, a), min(f.end, b)
            out.append(text[pos:s])
            out.append(_mask(text[s:e], marker=f.start >= a))
            pos = e
        out.append(text[pos:b])
        pieces.append("".join(out))
    return pieces


def redact(text: str, path: str | None = None) -> str:
    """`text` with secret-looking strings replaced by a marker; line breaks are preserved.
    `path`, when known, lets configuration formats (YAML, INI, .env, shell) count their
    unquoted values."""
    if not text:
        return text
    return redact_pieces(text, [(0, len(text))], path)[0]


def inserted_secret(text: str, start: int, end: int, inserted: str, path: str | None = None) -> Finding | None:
    """The first secret that replacing text[start:end] with `inserted` would put into the
    document, counting what surrounds it (a model completing `password = "` writes only the
    value); None when there is none."""
    lo, hi = max(0, start - MARGIN), min(len(text), end + MARGIN)
    window = text[lo:start] + inserted + text[end:hi]
    first, last = start - lo, start - lo + len(inserted)
    return next((f for f in find_secrets(window, path) if f.start < last and f.end > first), None)


def check_prompt(text: str) -> list[Finding]:
    """Secrets left in a finished prompt (decoded): always empty unless a piece escaped
    redaction, in which case the prompt must not be sent."""
    return find_secrets(text)
