"""Carrying one machine's share of the corpus to the machine that trains.

`python -m training snapshot FILE` selects this machine's files with the corpus rules (license,
held-out, privacy, filters, caps) and writes them with their manifest rows to a tar.xz; the
training run reads it beside its own machine's files. On arrival every file passes the same
filters again, and deduplication runs over both machines' files together.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

from .corpus import Counts, Distribution, gather, local_distributions


def write_snapshot(path: Path, machine: str, cap_bytes: int, stdlib_cap_bytes: int, seed: int,
                   workers: int) -> tuple[int, int]:
    """Write this machine's accepted files; return (files, bytes)."""
    dists = local_distributions(machine)
    entries = []
    n_files = n_bytes = 0
    with tarfile.open(path, "w:xz") as tar:
        for i, (dist, (files, counts, _)) in enumerate(zip(dists, gather(dists, cap_bytes, stdlib_cap_bytes, seed, workers))):
            entries.append({"dir": f"d{i}", "name": dist.name, "version": dist.version, "license": dist.license,
                            "license_raw": dist.license_raw, "paths": [f.path for f in files],
                            "counts": dataclasses.asdict(counts)})
            for f in files:
                data = f.text.encode("utf-8")
                info = tarfile.TarInfo(f"d{i}/{f.path}")
                info.size, info.mtime = len(data), 0  # fixed metadata: the archive is reproducible
                tar.addfile(info, io.BytesIO(data))
                n_files, n_bytes = n_files + 1, n_bytes + len(data)
        data = json.dumps({"machine": machine, "distributions": entries}, indent=1).encode("utf-8")
        info = tarfile.TarInfo("snapshot.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return n_files, n_bytes


def read_snapshot(path: Path, into: Path) -> tuple[list[Distribution], list[Counts]]:
    """Unpack a snapshot under `into`: its distributions (files to collect again) and the
    manifest rows recorded where it was made."""
    with tarfile.open(path, "r:xz") as tar:
        tar.extractall(into, filter="data")
    meta = json.loads((into / "snapshot.json").read_text(encoding="utf-8"))
    dists, rows = [], []
    for e in meta["distributions"]:
        dist = Distribution(e["name"], e["version"], e["license"], e["license_raw"], meta["machine"], into / e["dir"])
        dist.paths = list(e["paths"])
        dists.append(dist)
        rows.append(Counts(**e["counts"]))
    return dists, rows
