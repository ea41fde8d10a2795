"""Adaptive debounce: wait, per document, just longer than this user's usual gap between keys.

Every automatic completion request is a keystroke. The document remembers its last
`WINDOW` typing intervals; an interval longer than `PAUSE_FACTOR` times their upper quartile (not the
median: a typist alternating fast and slow keys has two rhythms, both typing) (or
than `PAUSE_S`) is a pause, not typing, and is not remembered. A request waits the
`QUANTILE` of the remembered intervals plus `MARGIN_S` before it may start a generation,
clamped to [100, 1000] ms (Tabby's range). A high quantile, not a multiple of the mean: the
delay should sit just above nearly every gap this user leaves while typing, so that a
keystroke inside the rhythm supersedes the previous request before it has cost anything,
and no later: every millisecond past the user's slowest ordinary gap is latency added to
the suggestion at a pause. With keys 60-200 ms apart the delay settles near 200 ms.

The first token of a generation comes some time after it starts (the prompt's last line is
prefilled: ~45 ms for the default model on a CPU). That much of the delay can overlap the
generation: it starts `lead` (the median time to a first token of the recent generations,
at most `MAX_LEAD_S`) before the delay ends, so a keystroke in the slow tail of the rhythm
still cancels it before it has produced a token, and a pause gets its suggestion `lead`
sooner. Never before the median interval plus the margin: a generation started inside the
user's ordinary rhythm would be superseded nearly every time. And only as far as another
keystroke has become unlikely (`STILL_TYPING`): after t without a key, the user is still
typing with the odds S(t)(1 - p) : p, S(t) the share of their gaps longer than t and p the
share of their keystrokes that end a pause. For someone who types bursts of ~18 keys 60-200
ms apart, a key in the slowest tenth of the gaps is still three times likelier than a
pause: starting there wrote a token for a cancelled generation at nearly every fifth
keystroke (`bench/debounce_policy.py`), so their generations start at the quantile itself.

The user's pauses set how long an automatic request may wait for a long suggestion
(`answer_by`): after that time the service answers with the complete lines written so far
and lets the generation run on into the suggestion cache. A pause here is a gap between two
keys (in any documents) longer than the delay the first of them waited: a gap in which a
suggestion was generated, and had to arrive before it ended. (Not the rhythm's pauses
above, which leave out gaps up to three times the usual ones, half a second for the typist
below: pauses often as short as that.) The goals are that 95% of pauses show a suggestion and that 95% of
suggestions arrive within 600 ms of the last key. A suggestion shows in a pause only if it
arrives before the pause ends, so the limit is the pause length that all but
`1 - SHOWN_GOAL` of this user's pauses outlast (their 5th percentile), less `DELIVERY_S`
for the answer to reach the editor, and never later than `ANSWER_BY_S`, the P95 goal.
Before `MIN_PAUSES` pauses are known the limit is the goal itself.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

MIN_DELAY_S = 0.1
MAX_DELAY_S = 1.0
PAUSE_S = 1.0  # a longer gap between two requests is a pause, not a typing interval
PAUSE_FACTOR = 3.0  # ... and so is one three times the upper quartile of the intervals
WINDOW = 24  # recent intervals remembered per document
QUANTILE = 0.9
MARGIN_S = 0.02  # above the quantile: a gap of exactly that length still supersedes
MIN_SAMPLES = 4  # fewer intervals than this teach nothing yet
INITIAL_DELAY_S = 0.2  # before this document has taught us anything
MAX_LEAD_S = 0.1  # a slower first token (a loaded machine) overlaps no more of the delay
LEADS = 8  # recent times to a first token remembered
STILL_TYPING = 0.25  # a generation starts early only where another key is at most this likely
KEYS = 96  # recent keystrokes remembered per document (how many of them ended a pause)
SHOWN_GOAL = 0.95  # the share of pauses that should show a suggestion
ANSWER_BY_S = 0.6  # an automatic request's answer comes at most this long after its key (the P95 goal)
DELIVERY_S = 0.02  # from the answer to the editor drawing it
PAUSES = 64  # recent pauses remembered (all documents: a habit of the user, not of a file)
MIN_PAUSES = 4


@dataclass
class _Rhythm:
    last: float
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    paused: bool = True  # the last keystroke came after a pause (or was the first)
    ends: deque[bool] = field(default_factory=lambda: deque(maxlen=KEYS))  # per keystroke: it ended a pause

    def likely_typing_until(self) -> float:
        """The gap up to which another keystroke is more likely than `STILL_TYPING` after
        one: a share S of the gaps is longer than t, and a keystroke ends a burst with the
        probability p, so after t without a key the user is still typing with the odds
        S (1 - p) : p."""
        if STILL_TYPING >= 1:
            return 0.0
        p = (sum(self.ends) + 1) / (len(self.ends) + 2)  # a pause now and then, before any was seen
        longer = STILL_TYPING / (1 - STILL_TYPING) * p / (1 - p)  # the share S that is unlikely enough
        return self.quantile(1 - longer) if longer < 1 else 0.0

    def pause_limit(self) -> float:
        """A longer gap than this between two keys is a pause."""
        if len(self.intervals) < MIN_SAMPLES:
            return PAUSE_S
        return min(PAUSE_S, PAUSE_FACTOR * self.quantile(0.75))

    def quantile(self, q: float) -> float:
        return nearest_rank(self.intervals, q)


class TypingDebounce:
    def __init__(self, max_documents: int = 256) -> None:
        self._docs: OrderedDict[str, _Rhythm] = OrderedDict()
        self._max = max_documents
        self._leads: deque[float] = deque(maxlen=LEADS)
        self._pauses: deque[float] = deque(maxlen=PAUSES)
        self._last_key: float | None = None  # of any document
        self._last_delay = 0.0  # the delay the last key waited

    def first_token(self, seconds: float) -> None:
        """A generation's time from its start to its first token (any document)."""
        self._leads.append(seconds)

    def keystroke(self, uri: str, now: float) -> float:
        """Record a request for `uri` at `now` (seconds, monotonic); the delay to wait."""
        rhythm = self._docs.get(uri)
        if rhythm is None:
            rhythm = self._docs[uri] = _Rhythm(last=now)
            while len(self._docs) > self._max:
                self._docs.popitem(last=False)
        else:
            interval = now - rhythm.last
            rhythm.last = now
            rhythm.paused = not 0 < interval <= rhythm.pause_limit()
            rhythm.ends.append(rhythm.paused)
            if not rhythm.paused:
                rhythm.intervals.append(interval)
            self._docs.move_to_end(uri)
        if self._last_key is not None and now - self._last_key > self._last_delay:
            self._pauses.append(now - self._last_key)  # since the last key anywhere: a move to another file is no pause
        self._last_key, self._last_delay = now, self.delay(uri)
        return self._last_delay

    def answer_by(self) -> float:
        """How long after its key an automatic request waits for its whole suggestion before
        it answers with what is complete (the module's docstring says why)."""
        if len(self._pauses) < MIN_PAUSES:
            return ANSWER_BY_S
        return max(0.0, min(ANSWER_BY_S, nearest_rank(self._pauses, 1 - SHOWN_GOAL) - DELIVERY_S))

    def delay(self, uri: str) -> float:
        rhythm = self._docs.get(uri)
        if rhythm is None or len(rhythm.intervals) < MIN_SAMPLES:
            return INITIAL_DELAY_S
        lead = min(MAX_LEAD_S, sorted(self._leads)[len(self._leads) // 2]) if self._leads else 0.0
        tail = rhythm.quantile(QUANTILE)
        start = min(tail, max(tail - lead, rhythm.likely_typing_until()))
        return clamp(max(rhythm.quantile(0.5), start) + MARGIN_S)

    def resumed(self, uri: str) -> bool:
        """Whether the document's last keystroke ended a pause rather than a typing interval."""
        rhythm = self._docs.get(uri)
        return rhythm is None or rhythm.paused

    def __len__(self) -> int:
        return len(self._docs)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)


def clamp(delay: float) -> float:
    return min(MAX_DELAY_S, max(MIN_DELAY_S, delay))


def nearest_rank(values, q: float) -> float:
    """The `q` quantile of `values` (not empty) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
