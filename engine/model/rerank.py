"""Scores that pick one of several candidate continuations (best-of-k decoding).

A candidate is the tokens a decode wrote and the log-probability the model gave each of
them. Three scores, all higher-is-better:

- `mean`: mean log-probability per token. Greedy continuations of different first tokens
  have different lengths; the sum alone would favour the shortest.
- `sqrt`: the sum divided by the square root of the length, between the sum (short wins) and
  the mean (a long confident run wins).
- `names`: `mean`, minus `NAME_PENALTY` for every identifier of the candidate that does not
  occur in the prompt. A small model's typical miss is a made-up name where the right one is
  in the prompt; preferring names the prompt shows is the reranking form of monitor-guided
  decoding (which constrains generation to identifiers that exist in scope).

The engine works on token ids; `unknown_names` needs the texts, which the caller decodes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SCORES = ("mean", "sqrt", "names")
NAME_PENALTY = 1.0  # nats per identifier absent from the prompt: about a token's worth of doubt
# Tokens (first included) a candidate other than the most likely first token's may take; one
# that has not stopped by then is dropped (`best`).
OTHER_MAX_TOKENS = 16
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unknown_names(text: str, prompt_words: frozenset[str]) -> int:
    """Identifiers in `text` (a candidate) that are not among `prompt_words`."""
    return sum(1 for name in _NAME.findall(text) if name not in prompt_words)


def words(text: str) -> frozenset[str]:
    """The identifiers of a text (the prompt's, for `unknown_names`)."""
    return frozenset(_NAME.findall(text))


def score(kind: str, logprobs: Sequence[float], unknown: int = 0) -> float:
    """The candidate's score under `kind` (one of SCORES); an empty candidate scores -inf."""
    if not logprobs:
        return float("-inf")
    total = float(sum(logprobs))
    if kind == "mean":
        return total / len(logprobs)
    if kind == "sqrt":
        return total / len(logprobs) ** 0.5
    if kind == "names":
        return total / len(logprobs) - NAME_PENALTY * unknown
    raise ValueError(f"unknown score {kind!r} (expected one of {', '.join(SCORES)})")


def best(kind: str, candidates: Sequence[tuple[Sequence[float], int, bool]]) -> int:
    """Index of the best of (logprobs, unknown names, finished) candidates. The first (the
    most likely first token's, what greedy decoding writes) always counts; another only if it
    finished by itself within `OTHER_MAX_TOKENS`: a continuation that runs on without ending
    its line is rarely the right line (on the held-out line targets, dropping them raised
    the pick's edit similarity), and the longest candidate sets the request's latency. The
    first wins a tie, so the more likely first token decides between equals."""
    scores = [score(kind, lp, unknown) if i == 0 or finished else float("-inf")
              for i, (lp, unknown, finished) in enumerate(candidates)]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
