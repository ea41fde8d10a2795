"""Which distributions may go into the corpus: license detection from dist-info metadata.

A distribution is taken only when its metadata names permissive licenses and nothing else:
`License-Expression` (PEP 639) when present, else the `License` field and the license
classifiers. In an expression, every part joined by AND must be permissive and at least
one side of an OR. Unknown or missing licenses are refused, never guessed.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import Parser

# Normalised license id -> the spellings seen in metadata (lower case).
PERMISSIVE = {
    "MIT": ("mit", "expat", "mit-0", "mit-cmu"),
    "BSD": ("bsd", "bsd-2-clause", "bsd-3-clause", "new bsd", "new bsd license", "modified bsd",
            "simplified bsd", "3-clause bsd", "bsd 3-clause", "bsd-3", "bsd 2-clause", "2-clause bsd",
            "0bsd", "bsd-3-clause-clear", "revised bsd"),
    "Apache-2.0": ("apache-2.0", "apache 2.0", "apache license 2.0", "apache license, version 2.0",
                   "apache software", "apache license version 2.0", "apache 2", "apache2", "apache 2.0 license"),
    "PSF-2.0": ("psf", "psf-2.0", "psfl", "python software foundation", "python-2.0", "cnri-python"),
    "ISC": ("isc", "isc license (iscl)"),
    "BSL-1.0": ("bsl-1.0", "boost software license 1.0"),
    "Zlib": ("zlib", "zlib/libpng"),
    "CC0-1.0": ("cc0-1.0", "cc0", "public domain"),
}
# Classifier leaves that certify a license rather than name one.
_NOT_A_LICENSE = ("osi approved", "dfsg approved", "fsf approved")
_BY_SPELLING = {s: name for name, spellings in PERMISSIVE.items() for s in spellings}
_CLASSIFIER = "license :: "


def permissive_id(text: str) -> str | None:
    """The permissive family of one license name, or None."""
    key = re.sub(r"\s+", " ", text.strip().strip(".").lower())
    key = key.removeprefix("osi approved :: ").removeprefix("the ")
    if key not in _BY_SPELLING:
        key = key.removesuffix(" license")
    if key in _BY_SPELLING:
        return _BY_SPELLING[key]
    if key.endswith(" with llvm-exception"):
        return permissive_id(key.removesuffix(" with llvm-exception"))
    if key.startswith("redistribution and use in source and binary forms"):  # the BSD text itself
        return "BSD"
    if key.startswith("permission is hereby granted, free of charge"):  # the MIT text itself
        return "MIT"
    return None


def _expression(expr: str) -> set[str] | None:
    """Permissive ids an SPDX expression allows, or None when it needs a non-permissive one."""
    alternatives: list[set[str] | None] = []
    for either in re.split(r"\s+OR\s+", expr.replace("(", " ").replace(")", " ")):
        ids = [permissive_id(part) for part in re.split(r"\s+AND\s+", either.strip()) if part.strip()]
        alternatives.append(set(ids) if ids and None not in ids else None)
    allowed = [a for a in alternatives if a is not None]
    return allowed[0] if allowed else None


def read_metadata(text: str) -> Message:
    return Parser().parsestr(text, headersonly=True)


def detect_license(meta: Message) -> tuple[str | None, str]:
    """(permissive license ids joined by '+', or None; the raw statement it was read from)."""
    expr = (meta.get("License-Expression") or "").strip()
    if expr:
        ids = _expression(expr)
        return ("+".join(sorted(ids)) if ids else None), expr
    named: list[str] = []
    field = (meta.get("License") or "").strip()
    # A long License field is usually the whole license text: read its first line only.
    if field and field.upper() != "UNKNOWN":
        named.append(field.splitlines()[0] if len(field) > 120 else field)
    for classifier in meta.get_all("Classifier") or []:
        lower = classifier.lower()
        if lower.startswith(_CLASSIFIER):
            name = classifier.split("::")[-1].strip()
            if name.lower() not in _NOT_A_LICENSE:
                named.append(name)
    raw = "; ".join(named)
    if not named:
        return None, ""
    ids = [permissive_id(n) for n in named]
    if None in ids:
        return None, raw
    return "+".join(sorted(set(ids))), raw
