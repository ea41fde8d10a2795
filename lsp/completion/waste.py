"""Where the tokens nobody sees come from: cancelled and empty generations, by reason.

The model host counts every generated token and the wasted ones (`wasted_tokens`); this
ledger says why they were wasted, so that the waste can be cut where it is made (the
status's `waste`, printed by `bench/lsp_latency.py`). A generation is wasted when:

- `typing`: a keystroke inside the user's typing rhythm did not agree with what it wrote
  (or came before its first token);
- `resumed`: a keystroke after a pause (longer than the rhythm's gaps) did not agree: the
  pause was too short for the generation;
- `diverged`: one of its tokens left what the user had typed through it;
- `moved`: a request came for another document (the user types there now);
- `orphaned`: the client cancelled its request and no keystroke took it up;
- `explicit`: an explicit request's candidates, cancelled with their request;
- `closed`: its document closed;
- `empty`: it ran to its end but post-processing left nothing to show;
- `rejected`: post-processing left nothing of its greedy text, and another first token's
  text was shown instead (`next_best.py`): the greedy text's tokens, the probe's, and those
  of the alternatives not shown;
- `rest`: a request answered with its first lines and it ran on to its end, but no later
  request showed what it wrote after that answer (booked when it ends, taken back when a
  request shows it: typing through the lines shown, or asking again at the same place).

The tokens of a generation that an answer showed are never waste, also when it is cancelled
afterwards (after an answer made of its first lines).

Per reason: generations and tokens, and of those tokens how many the engine wrote after
the cancel was decided (the cancel's latency in tokens); the recent cancel latencies, from
the decision to the engine's last word arriving back on the event loop, in milliseconds.
For the candidates post-processing dropped: which step dropped them (`nothing`: the model
ended the line at once; `line check`: it broke the syntax of the line; `filters`: the other
filters), and the last few of them (the end of the line before the cursor, the model's
text), to tell a wrong filter from a useless suggestion.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, replace

from .postprocess import Site, finish

LATENCIES = 64  # recent cancel latencies kept
SAMPLES = 8  # recent dropped candidates kept
SAMPLE_CHARS = 40  # of the line before the cursor
SAMPLE_TEXT_CHARS = 120  # of the model's text


@dataclass
class _Tally:
    generations: int = 0
    tokens: int = 0
    after_cancel: int = 0  # of `tokens`, written after the cancel was decided
    before_first: int = 0  # generations cancelled before they had written anything
    shown_later: int = 0  # `rest` only: tokens booked, then shown


class WasteLedger:
    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}
        self._latencies: deque[float] = deque(maxlen=LATENCIES)
        self._dropped: dict[str, int] = {}
        self._samples: deque[tuple[str, str, str]] = deque(maxlen=SAMPLES)

    def cancelled(self, why: str, tokens: int, seen: int, latency_s: float | None, shown: int = 0) -> None:
        """A generation cancelled for `why` ended with `tokens` tokens from the engine, of
        which `seen` had reached the service when the cancel was decided `latency_s` ago,
        and the first `shown` had been shown (an answer made of its first lines)."""
        tally = self._tallies.setdefault(why, _Tally())
        tally.generations += 1
        tally.tokens += tokens - shown
        tally.after_cancel += max(0, tokens - seen)
        tally.before_first += seen == 0
        if latency_s is not None:
            self._latencies.append(latency_s)

    def empty(self, tokens: int) -> None:
        """A generation ran to its end and nothing of it could be shown."""
        self._book("empty", tokens)

    def rejected(self, tokens: int) -> None:
        """A generation whose greedy text was dropped showed an alternative's instead: `tokens`
        written for what was not shown."""
        self._book("rejected", tokens)

    def rest(self, tokens: int) -> None:
        """A generation that a request answered with part of ran on to its end: `tokens`
        written after that answer are not shown (yet)."""
        self._book("rest", tokens)

    def _book(self, why: str, tokens: int) -> None:
        tally = self._tallies.setdefault(why, _Tally())
        tally.generations += 1
        tally.tokens += tokens

    def rest_shown(self, tokens: int) -> None:
        """A request showed `tokens` of a rest booked before: they are not waste."""
        tally = self._tallies.setdefault("rest", _Tally())
        tally.tokens -= tokens
        tally.shown_later += tokens

    def dropped(self, raw: str, site: Site, max_lines: int) -> None:
        """Post-processing left nothing of the model's text `raw` at `site`."""
        if not raw.strip():
            step = "nothing"
        elif site.line_check is not None and finish(raw, replace(site, line_check=None), max_lines) is not None:
            step = "line check"
        else:
            step = "filters"
        self._dropped[step] = self._dropped.get(step, 0) + 1
        self._samples.append((step, site.prefix_line[-SAMPLE_CHARS:], raw[:SAMPLE_TEXT_CHARS]))

    def as_json(self) -> dict:
        out: dict = {why: {k: v for k, v in vars(t).items() if k != "shown_later" or why == "rest"}
                     for why, t in sorted(self._tallies.items())}
        if self._dropped:
            out["dropped"] = dict(self._dropped)
            out["dropped_last"] = [list(s) for s in self._samples]
        if self._latencies:
            ordered = sorted(self._latencies)
            out["cancel_ms"] = {"p50": round(1000 * statistics.median(ordered), 1),
                                "max": round(1000 * ordered[-1], 1), "n": len(ordered)}
        return out
