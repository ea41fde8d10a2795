"""The data manifest written next to the model: every package considered, its version,
license and what was taken (files, bytes) or dropped and why, per machine."""

from __future__ import annotations

import dataclasses
import platform
import sys

from . import corpus, dedup, licenses
from .corpus import Counts


def build(rows: list[Counts], result: dedup.DedupResult, model: str, seed: int) -> dict:
    packages = []
    for row in sorted(rows, key=lambda r: (corpus.norm_name(r.package), r.machine)):
        entry = dataclasses.asdict(row)
        entry["dropped"] = dict(sorted(row.dropped.items()))
        packages.append(entry)
    kept_bytes: dict[str, int] = {}
    kept_files: dict[str, int] = {}
    for f in result.kept:
        kept_bytes[f.package] = kept_bytes.get(f.package, 0) + len(f.text.encode("utf-8"))
        kept_files[f.package] = kept_files.get(f.package, 0) + 1
    trained = sorted({r.package for r in rows if kept_files.get(r.package)}, key=corpus.norm_name)
    held_out = [p for p in packages if any(k.startswith(("held-out", "copy of held-out")) for k in p["dropped"])]
    by_license: dict[str, int] = {}
    for r in rows:
        if kept_bytes.get(r.package) and not r.license.startswith("refused"):
            by_license[r.license] = by_license.get(r.license, 0) + r.bytes
    return {
        "model": model,
        "seed": seed,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "rules": {
            "languages": "Python (.py, .pyi)",
            "licenses": sorted(licenses.PERMISSIVE),
            "held_out": corpus.HELD_OUT,
            "vendored_folders_skipped": sorted(corpus.VENDOR_DIRS),
            "file_bytes": [corpus.MIN_BYTES, corpus.MAX_BYTES],
            "near_duplicate_jaccard": dedup.THRESHOLD,
        },
        "totals": {
            "packages_trained_on": len(trained),
            "files": len(result.kept),
            "bytes": sum(kept_bytes.values()),
            "exact_duplicates_dropped": sum(result.exact.values()),
            "near_duplicates_dropped": sum(result.near.values()),
            "bytes_by_license_before_dedup": dict(sorted(by_license.items())),
        },
        "after_dedup": {p: {"files": kept_files[p], "bytes": kept_bytes[p]} for p in trained},
        "held_out_exclusions": [{k: p[k] for k in ("package", "version", "machine", "dropped")} for p in held_out],
        "packages": packages,
    }
