"""BM25 over chunks, updated file by file.

Documents are (path, chunk number) keys with term counts; a file's documents are replaced
as a whole when it changes, so a keystroke re-scores only the file being edited.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict

DocKey = tuple[str, int]  # path, chunk index
COMMON_MIN_DOCS = 200  # small corpora keep every term


class BM25:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._postings: dict[str, dict[DocKey, int]] = defaultdict(dict)
        self._lengths: dict[DocKey, int] = {}
        self._docs_of: dict[str, list[tuple[DocKey, tuple[str, ...]]]] = {}
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def set_file(self, path: str, chunks: list[dict[str, int]]) -> None:
        """Replace the documents of `path` with one per chunk (term -> count)."""
        self.remove_file(path)
        docs = []
        for i, terms in enumerate(chunks):
            key = (path, i)
            for term, count in terms.items():
                self._postings[term][key] = count
            length = sum(terms.values())
            self._lengths[key] = length
            self._total_length += length
            docs.append((key, tuple(terms)))
        self._docs_of[path] = docs

    def remove_file(self, path: str) -> None:
        for key, terms in self._docs_of.pop(path, ()):
            for term in terms:
                posting = self._postings.get(term)
                if posting is not None:
                    posting.pop(key, None)
                    if not posting:
                        del self._postings[term]
            self._total_length -= self._lengths.pop(key)

    def search(self, query: list[str], top_k: int = 50, exclude: str | None = None) -> list[tuple[DocKey, float]]:
        """The best `top_k` documents for the query terms (ties broken by key), skipping the
        documents of the file `exclude`."""
        n = len(self._lengths)
        if not n or not query:
            return []
        avg = self._total_length / n
        scores: dict[DocKey, float] = defaultdict(float)
        weights: dict[str, int] = defaultdict(int)
        for term in query:
            weights[term] += 1
        common = max(COMMON_MIN_DOCS, n // 4)
        for term, qtf in weights.items():
            posting = self._postings.get(term)
            if not posting or len(posting) > common:
                continue  # in a quarter of all chunks: says little, costs most (a stop word)
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for key, tf in posting.items():
                norm = tf + self.k1 * (1 - self.b + self.b * self._lengths[key] / avg)
                scores[key] += qtf * idf * tf * (self.k1 + 1) / norm
        return heapq.nsmallest(top_k, ((k, s) for k, s in scores.items() if k[0] != exclude),
                               key=lambda ks: (-ks[1], ks[0]))
