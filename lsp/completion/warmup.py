"""Prefix-cache warm-ups: the engine prefills the part of a prompt before the cursor's line
while the user types on it.

Everything before the line is the same from one keystroke to the next, so the engine
prefills it (in the background) once per line, during the debounce, and the request after
the pause computes only the line and what follows it. A request waits for a warm-up still
running on its prefix rather than cancelling it: the engine would otherwise compute the
same tokens twice, and a request superseded while it waits leaves the warm-up's work to the
next one. A warm-up started in one document stops the others' (the user left those lines).
On the native engine a warm-up is a prefill-only request (`ModelHost.warm`): it generates no
token and runs only while no generation runs or waits.
"""

from __future__ import annotations

from typing import Any

MIN_WARM_TOKENS = 64  # a shorter shared prefix is not worth a warm-up


class WarmUps:
    def __init__(self, models) -> None:  # models: the ModelHost
        self.models = models
        self._warm: dict[str, tuple[int, Any]] = {}  # uri -> (hash of the warmed prefix, its stream)

    def start(self, uri: str, ids: list[int], stable: int) -> None:
        """Warm `ids[:stable]` for `uri`, unless that prefix is warm (or warming) already."""
        if stable < MIN_WARM_TOKENS:
            return
        key = hash(tuple(ids[:stable]))
        if self._warm.get(uri, (None, None))[0] == key:
            return
        for other in self._warm:
            self._stop(other)
        stream = self.models.warm(ids[:stable])
        if stream is not None:
            self._warm[uri] = (key, stream)

    async def finished(self, uri: str) -> None:
        """Wait for the document's warm-up to finish prefilling."""
        _, stream = self._warm.get(uri, (None, None))
        if stream is not None and not stream.done:
            await stream.result()

    def _stop(self, uri: str) -> None:
        key, stream = self._warm.get(uri, (None, None))
        if stream is not None:
            stream.cancel()
            self._warm[uri] = (key, None)

    def __len__(self) -> int:
        return len(self._warm)

    def forget(self, uri: str) -> None:
        self._stop(uri)
        self._warm.pop(uri, None)


def stable_prefix(ids: list[int], tokenizer) -> int:
    """Ids before the cursor's line: up to the last line break in the FIM prefix (0 when the
    prompt has no FIM layout). The prefix runs from `<fim_prefix>` to the next FIM token:
    `<fim_suffix>` in prefix-suffix-middle, `<fim_middle>` in suffix-prefix-middle (where the
    text after the cursor comes first and is stable too)."""
    special = tokenizer.special
    if special.fim_prefix is None or special.fim_prefix not in ids:
        return 0
    start = ids.index(special.fim_prefix)
    end = next((i for i in range(start + 1, len(ids)) if ids[i] in (special.fim_suffix, special.fim_middle)), len(ids))
    for i in range(end - 1, start, -1):
        if "\n" in tokenizer.decode([ids[i]]):
            return i + 1
    return start + 1
