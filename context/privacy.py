"""Privacy rules: which files are secret-bearing, and redaction of secret-looking strings.

Everything that leaves the index for a prompt passes through `redact`, so a key pasted into
an ordinary source file never reaches a backend. Redaction keeps line structure intact (it
only replaces characters inside a line) so line ranges stay valid.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

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

_SECRET_VALUE = re.compile(
    "|".join((
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b",  # Slack
        r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b",  # OpenAI-style keys
        r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
        r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b",  # JWTs
    ))
)
# name = "value" where the name says secret: keep the name, hide the value.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b[\w.-]*(?:password|passwd|secret|api[_-]?key|access[_-]?key|auth[_-]?token|private[_-]?key|token)[\w.-]*
     ["']?\s*[:=]\s*)
    (["'])([^"'\s]{8,})\2
    """
)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]{3,})(@)", re.I)


def is_secret_path(rel_path: str) -> bool:
    """Whether a workspace-relative path names a secret-bearing file."""
    parts = PurePosixPath(rel_path).parts
    if any(p in SECRET_DIRS for p in parts[:-1]):
        return True
    name = parts[-1].lower() if parts else ""
    if name.endswith(_TEMPLATE_SUFFIXES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILE_PATTERNS)


# Literal pieces each pattern needs: a text without them skips that (slow) regular expression.
_VALUE_MARKERS = ("-----BEGIN", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "sk-",
                  "AIza", "eyJ")
_ASSIGNMENT_MARKERS = ("pass", "secret", "key", "token")


def redact(text: str) -> str:
    """`text` with secret-looking strings replaced by a marker; line breaks are preserved."""
    if not text:
        return text
    if any(m in text for m in _VALUE_MARKERS):
        text = _SECRET_VALUE.sub(REDACTED, text)
    lower = text.lower()
    if any(m in lower for m in _ASSIGNMENT_MARKERS):
        text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}{m.group(2)}", text)
    if "://" in text and "@" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    return text
