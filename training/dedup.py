"""Deduplication: exact (whitespace-normalised hash) and near (MinHash with LSH banding).

Files are visited in a fixed order and the first of each group is kept, so the result does
not depend on process count or hash seeds. Near duplicates are pairs whose estimated Jaccard
similarity of word 5-gram sets reaches the threshold (0.85, as The Stack's near-dedup).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Document(Protocol):
    package: str
    text: str

NUM_PERM = 64
BANDS = 8  # 8 bands of 8 rows: pairs from about 0.77 similarity up are compared
SHINGLE = 5
THRESHOLD = 0.85
_WORD = re.compile(r"\w+|[^\w\s]+")
_MASK = np.uint64(0xFFFFFFFF)
_rng = np.random.default_rng(1234)  # fixed: signatures must agree across processes and runs
_A = _rng.integers(1, 2**32 - 1, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**32 - 1, NUM_PERM, dtype=np.uint64)


def exact_key(text: str) -> bytes:
    return hashlib.sha1(" ".join(text.split()).encode("utf-8")).digest()


def signature(text: str) -> np.ndarray:
    """MinHash signature [NUM_PERM] (uint32 values) of the file's word 5-grams."""
    words = _WORD.findall(text)
    if len(words) < SHINGLE:
        words = words + [""] * (SHINGLE - len(words))
    hashes = np.fromiter(
        {zlib.crc32(" ".join(words[i:i + SHINGLE]).encode("utf-8")) for i in range(len(words) - SHINGLE + 1)},
        dtype=np.uint64,
    )
    # (a*h + b) mod 2^32 per permutation; a*h < 2^64 so uint64 arithmetic is exact before the mask
    permuted = (hashes[:, None] * _A[None, :] + _B[None, :]) & _MASK
    return permuted.min(axis=0).astype(np.uint32)


@dataclass
class DedupResult:
    kept: list[Any]  # the documents given, in order
    exact: dict[str, int]  # package -> files dropped as exact duplicates
    near: dict[str, int]


def deduplicate(files: list[Document], signatures: list[np.ndarray] | None = None,
                threshold: float = THRESHOLD) -> DedupResult:
    """Keep the first file of every exact or near-duplicate group, in the given order."""
    if signatures is None:
        signatures = [signature(f.text) for f in files]
    rows = NUM_PERM // BANDS
    seen_exact: set[bytes] = set()
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept_sigs: list[np.ndarray] = []
    result = DedupResult([], {}, {})
    for f, sig in zip(files, signatures):
        key = exact_key(f.text)
        if key in seen_exact:
            result.exact[f.package] = result.exact.get(f.package, 0) + 1
            continue
        seen_exact.add(key)
        bands = [(b, sig[b * rows:(b + 1) * rows].tobytes()) for b in range(BANDS)]
        candidates = {i for band in bands for i in buckets.get(band, ())}
        if any(np.mean(kept_sigs[i] == sig) >= threshold for i in candidates):
            result.near[f.package] = result.near.get(f.package, 0) + 1
            continue
        index = len(kept_sigs)
        kept_sigs.append(sig)
        for band in bands:
            buckets.setdefault(band, []).append(index)
        result.kept.append(f)
    return result
