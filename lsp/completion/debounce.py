"""Adaptive debounce: wait, per document, about as long as this user takes between keys.

Every automatic completion request is a keystroke. The interval since the document's last
request updates an exponentially weighted mean and mean deviation (the estimator TCP uses for
round-trip times); an interval longer than `PAUSE_FACTOR` times the mean (or than `PAUSE_S`)
is a pause, not typing, and leaves the estimate alone. A request waits
`mean + DEVIATIONS * deviation` before it may start a generation, clamped to [100, 1000] ms
(Tabby's range): a fast typist gets suggestions sooner, and a keystroke that comes inside the
usual rhythm supersedes the previous request before that request has cost anything. With
keys 60-200 ms apart, 1.5 deviations let about one keystroke in seven through; the next key
cancels that generation, usually while it is still computing the prompt's tail, before it
has produced many tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MIN_DELAY_S = 0.1
MAX_DELAY_S = 1.0
PAUSE_S = 1.0  # a longer gap between two requests is a pause, not a typing interval
PAUSE_FACTOR = 3.0  # ... and so is one three times the usual interval
GAIN = 0.25  # weight of a new interval in the mean
DEVIATIONS = 1.5
INITIAL_MEAN_S = 0.15  # before this document has taught us anything
INITIAL_DEVIATION_S = 0.05


@dataclass
class _Rhythm:
    last: float
    mean: float = INITIAL_MEAN_S
    deviation: float = INITIAL_DEVIATION_S


class TypingDebounce:
    def __init__(self, max_documents: int = 256) -> None:
        self._docs: OrderedDict[str, _Rhythm] = OrderedDict()
        self._max = max_documents

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
            if 0 < interval <= min(PAUSE_S, PAUSE_FACTOR * rhythm.mean):
                error = interval - rhythm.mean
                rhythm.mean += GAIN * error
                rhythm.deviation += GAIN * (abs(error) - rhythm.deviation)
            self._docs.move_to_end(uri)
        return self.delay(uri)

    def delay(self, uri: str) -> float:
        rhythm = self._docs.get(uri)
        if rhythm is None:
            return clamp(INITIAL_MEAN_S + DEVIATIONS * INITIAL_DEVIATION_S)
        return clamp(rhythm.mean + DEVIATIONS * rhythm.deviation)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)


def clamp(delay: float) -> float:
    return min(MAX_DELAY_S, max(MIN_DELAY_S, delay))
