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

A line may have two prompts: the full one and a short one (`service.py`: the file window
alone, for a pause that ends before the full prompt is warm). The short one's prefix is
warmed first (the engine runs warm-ups in the order they came): it is ready a few hundred
milliseconds into the line, the full one's after a second or more on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MIN_WARM_TOKENS = 64  # a shorter shared prefix is not worth a warm-up


@dataclass
class _Line:
    key: int  # hash of the warmed prefixes
    streams: dict[str, Any] = field(default_factory=dict)  # "quick" / "full" -> its engine stream


class WarmUps:
    def __init__(self, models) -> None:  # models: the ModelHost
        self.models = models
        self._warm: dict[str, _Line] = {}

    def start(self, uri: str, prefixes: dict[str, list[int]]) -> None:
        """Warm each prefix of `prefixes` ("quick" before "full", either may be missing) for
        `uri`, unless those prefixes are warm (or warming) already."""
        prefixes = {kind: ids for kind, ids in prefixes.items() if len(ids) >= MIN_WARM_TOKENS}
        if not prefixes:
            return
        key = hash(tuple((kind, tuple(ids)) for kind, ids in sorted(prefixes.items(), reverse=True)))
        line = self._warm.get(uri)
        if line is not None and line.key == key:
            return
        for other in self._warm:
            self._stop(other)
        line = self._warm[uri] = _Line(key)
        for kind in ("quick", "full"):
            if kind in prefixes:
                stream = self.models.warm(prefixes[kind])
                if stream is not None:
                    line.streams[kind] = stream

    def ready(self, uri: str) -> bool:
        """Whether the document's full prompt is warm (or nothing warms it)."""
        stream = self._stream(uri, "full")
        return stream is None or stream.done

    async def finished(self, uri: str, kind: str = "full") -> None:
        """Wait for the document's warm-up of `kind` to finish prefilling."""
        stream = self._stream(uri, kind)
        if stream is not None and not stream.done:
            await stream.result()

    def _stream(self, uri: str, kind: str):
        line = self._warm.get(uri)
        return line.streams.get(kind) if line is not None else None

    def _stop(self, uri: str) -> None:
        line = self._warm.get(uri)
        if line is not None:
            for stream in line.streams.values():
                stream.cancel()
            line.streams.clear()

    def __len__(self) -> int:
        return len(self._warm)

    def forget(self, uri: str) -> None:
        self._stop(uri)
        self._warm.pop(uri, None)


def stable_prefix(ids: list[int], tokenizer) -> int:
    """Ids before the cursor's line: up to the last line break in the FIM prefix (0 when the
    prompt has no FIM layout). The prefix runs from `<fim_prefix>` to the next FIM token:
    `<fim_suffix>` in prefix-suffix-middle, `<fim_middle>` in suffix-prefix-middle (where the
    text after the cursor comes first and is stable too), less a line break's token that
    also holds the cursor line's indentation."""
    special = tokenizer.special
    if special.fim_prefix is None or special.fim_prefix not in ids:
        return 0
    start = ids.index(special.fim_prefix)
    end = next((i for i in range(start + 1, len(ids)) if ids[i] in (special.fim_suffix, special.fim_middle)), len(ids))
    for i in range(end - 1, start, -1):
        piece = tokenizer.decode([ids[i]])
        if "\n" in piece:
            # A line break's token may carry the next line's indentation, which the first
            # character typed on that line can re-tokenize ("\n    " + "v" as "\n   ", " v"):
            # such a token is left to the request.
            return i + 1 if piece.endswith("\n") else i
    return start + 1
