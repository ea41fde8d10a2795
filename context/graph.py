"""The file graph (definitions, references and imports) and personalized PageRank on it.

An edge A -> B says "A uses something defined in B" (or imports B). Its weight follows the
repo-map heuristic: the square root of how often A uses the name (one use matters, the
hundredth little more), divided by how many files define the name (a name defined everywhere,
like `get` or `__init__`, says little about which one is meant). PageRank is personalized on
the current file and the files edited recently, so it ranks what the code being written
depends on, directly or through a chain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .symbols import FileSymbols

IMPORT_WEIGHT = 2.0
MAX_DEFINING_FILES = 20  # names defined in more files than this carry no signal


def _name_weight(name: str) -> float:
    if name.startswith("_") and not name.startswith("__"):
        return 0.3  # private helpers are used near home
    if name.startswith("__") or len(name) < 3:
        return 0.1
    return 1.0


def out_edges(path: str, symbols: FileSymbols, defining: Mapping[str, set[str]], imported: set[str]) -> dict[str, float]:
    """Weighted edges from `path` to the files it uses (`imported`: its resolved imports)."""
    own = symbols.defined_names()
    edges: dict[str, float] = {}
    for name, count in symbols.references.items():
        targets = defining.get(name)
        if not targets or name in own or len(targets) > MAX_DEFINING_FILES:
            continue
        w = _name_weight(name) * math.sqrt(count) / len(targets)
        for target in targets:
            if target != path:
                edges[target] = edges.get(target, 0.0) + w
    for target in imported:
        edges[target] = edges.get(target, 0.0) + IMPORT_WEIGHT
    return edges


class FileGraph:
    """Weighted edges per file, with personalized PageRank computed on demand."""

    def __init__(self) -> None:
        self.edges: dict[str, dict[str, float]] = {}
        self._matrix: tuple | None = None

    def set_edges(self, path: str, edges: dict[str, float]) -> None:
        if self.edges.get(path) == edges:
            return
        self.edges[path] = edges
        self._matrix = None

    def remove(self, path: str) -> None:
        self.edges.pop(path, None)
        self._matrix = None

    def _build(self) -> tuple[list[str], dict[str, int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        nodes = sorted(set(self.edges) | {t for e in self.edges.values() for t in e})
        ids = {p: i for i, p in enumerate(nodes)}
        src, dst, w = [], [], []
        for a, targets in self.edges.items():
            for b, weight in targets.items():
                src.append(ids[a])
                dst.append(ids[b])
                w.append(weight)
        src_a, dst_a, w_a = np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(w)
        out_sum = np.bincount(src_a, weights=w_a, minlength=len(nodes))
        norm = w_a / np.where(out_sum[src_a] > 0, out_sum[src_a], 1.0)
        dangling = out_sum == 0
        return nodes, ids, src_a, dst_a, norm, dangling

    def pagerank(self, personal: Mapping[str, float], damping: float = 0.85, iterations: int = 30) -> dict[str, float]:
        """Personalized PageRank; `personal` weights the restart distribution (files not in
        the graph are ignored; with none left, the restart is uniform)."""
        if self._matrix is None:
            self._matrix = self._build()
        nodes, ids, src, dst, norm, dangling = self._matrix
        n = len(nodes)
        if n == 0:
            return {}
        restart = np.zeros(n)
        for path, weight in personal.items():
            if path in ids:
                restart[ids[path]] += weight
        restart = restart / restart.sum() if restart.sum() > 0 else np.full(n, 1.0 / n)
        rank = restart.copy()
        for _ in range(iterations):
            spread = np.bincount(dst, weights=norm * rank[src], minlength=n)
            rank = damping * (spread + rank[dangling].sum() * restart) + (1 - damping) * restart
        return {nodes[i]: float(rank[i]) for i in np.flatnonzero(rank > 0)}
