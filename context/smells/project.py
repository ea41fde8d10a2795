"""Project-level smells: import cycles, and history-aware hotspots, change coupling, shotgun surgery.

- Import cycles: strongly connected components of the import graph (Tarjan, iterative); each
  component is reported with one full cycle through it, the shortest from its first file.
- Change coupling follows code-maat's `coupling` analysis: commits touching more than
  `max_changeset` files are skipped; for two files with at least `min_revs` revisions each and
  at least `min_shared` shared revisions, degree = shared / mean(revisions) in percent, reported
  at `min_degree` percent or more.
- Hotspots: revisions x complexity (summed McCabe of the file's functions), as in Tornhill's
  "Your Code as a Crime Scene"; the highest-scoring files above both minimums are reported.
- Shotgun surgery: a file change-coupled (as above) to at least `min_partners` other files:
  its changes keep dragging those along (Lanza & Marinescu's rule transposed to history).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations

from ..history import Commit


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Components with more than one node (or a self-loop), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return sorted(found)


def shortest_cycle(graph: Mapping[str, Iterable[str]], start: str, members: set[str]) -> list[str]:
    """The shortest cycle from `start` back to itself inside `members` (BFS), start repeated at the end."""
    parents: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return list(reversed(path)) + [start]
            if child in members and child not in seen:
                seen.add(child)
                parents[child] = node
                queue.append(child)
    return [start]


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One full cycle path per import cycle component, e.g. [a, b, c, a]."""
    return [shortest_cycle(graph, comp[0], set(comp)) for comp in strongly_connected(graph)]


@dataclass(frozen=True)
class Coupling:
    path: str
    other: str
    shared: int
    degree: float  # percent (code-maat prints it truncated to an integer; messages do too)
    revisions: int
    other_revisions: int


def revisions(commits: Iterable[Commit], max_changeset: int) -> tuple[Counter, Counter]:
    """(revisions per file, shared revisions per file pair), skipping oversized changesets."""
    revs: Counter = Counter()
    shared: Counter = Counter()
    for commit in commits:
        files = sorted(set(commit.files))
        if len(files) > max_changeset:
            continue
        revs.update(files)
        shared.update(combinations(files, 2))
    return revs, shared


def change_coupling(commits: list[Commit], min_revs: int = 5, min_shared: int = 5, min_degree: float = 30,
                    max_changeset: int = 30, existing: set[str] | None = None) -> list[Coupling]:
    """code-maat's coupling: pairs at or above the thresholds, strongest first."""
    revs, shared = revisions(commits, max_changeset)
    found = []
    for (a, b), n in shared.items():
        if n < min_shared or revs[a] < min_revs or revs[b] < min_revs:
            continue
        if existing is not None and (a not in existing or b not in existing):
            continue
        degree = 100.0 * n / ((revs[a] + revs[b]) / 2)
        if degree >= min_degree:
            found.append(Coupling(a, b, n, degree, revs[a], revs[b]))
    return sorted(found, key=lambda c: (-c.degree, -c.shared, c.path, c.other))


def shotgun_surgery(couplings: list[Coupling], min_partners: int) -> dict[str, list[str]]:
    """Files coupled to at least `min_partners` others, with those partners."""
    partners: dict[str, set[str]] = {}
    for c in couplings:
        partners.setdefault(c.path, set()).add(c.other)
        partners.setdefault(c.other, set()).add(c.path)
    return {p: sorted(others) for p, others in sorted(partners.items()) if len(others) >= min_partners}


@dataclass(frozen=True)
class Hotspot:
    path: str
    revisions: int
    complexity: int
    score: int


def hotspots(commits: list[Commit], complexity: Mapping[str, int], min_revisions: int, min_complexity: int,
             top: int) -> list[Hotspot]:
    """The `top` files by revisions x complexity among those above both minimums."""
    revs = Counter(f for c in commits for f in set(c.files))
    found = [Hotspot(p, revs[p], cx, revs[p] * cx) for p, cx in complexity.items()
             if revs[p] >= min_revisions and cx >= min_complexity]
    return sorted(found, key=lambda h: (-h.score, h.path))[:top]
