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

Once a line's prefix is warm, each keystroke on it warms the line itself up to the cursor
(`typed`): the prompt's warm part, then the line's text tokenized as the prompt would have
it (`LineStart`), of the prompt a request would use now (the short one until the full one
is warm). It goes before a new line's background warm-up (`Priority.TYPING`). The engine
computes only the tokens the keystroke changed (the cache holds whole blocks: those of the
last block at most), a few milliseconds of a step, and the request after the pause only the
last block and the FIM token that follows the line. A keystroke's line warm-up replaces the
previous one's; the line's text passes the prompt's redaction first, and is not warmed if
that would change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopls.context.privacy import redact_pieces
from loopls.engine.backends.base import Priority

MIN_WARM_TOKENS = 64  # a shorter shared prefix is not worth a warm-up


@dataclass
class _Line:
    key: int  # hash of the warmed prefixes
    streams: dict[str, Any] = field(default_factory=dict)  # "quick" / "full" / "typed" -> its engine stream
    starts: dict[str, "LineStart"] = field(default_factory=dict)  # "quick" / "full" -> where its line starts


@dataclass(frozen=True)
class LineStart:
    """Where a prompt's cursor line starts: the warm ids before it and the document offset of
    the text they are followed by (the line up to the cursor, then at most one FIM token)."""

    ids: tuple[int, ...]
    offset: int

    def prompt(self, text: str, cursor: int, tokenizer, path: str | None = None) -> list[int] | None:
        """The prompt up to `cursor` for a keystroke on this line: None when the cursor left
        the line, or when redaction would change the line's text (its secret is not sent)."""
        line = text[self.offset:cursor]
        if cursor < self.offset or "\n" in line[1:] or not line.strip():
            return None
        if redact_pieces(text, [(self.offset, cursor)], path)[0] != line:
            return None
        return [*self.ids, *tokenizer.encode(line)]


def line_start(ids: list[int], stable: int, text: str, offset: int, tokenizer) -> LineStart | None:
    """The `LineStart` of a prompt built for `text` at `offset`: None for a layout where
    more than one token follows the cursor's line (prefix-suffix-middle: the suffix comes
    after it, and moves as the line grows), or where the prompt's line is not the
    document's (redacted, or tokenized across the line's start)."""
    special = tokenizer.special
    if stable == 0:
        return None
    end = next((i for i in range(stable, len(ids)) if ids[i] in (special.fim_suffix, special.fim_middle)), len(ids))
    if len(ids) - end > 1:
        return None
    line = tokenizer.decode(ids[stable:end])
    start = offset - len(line)
    if start < 0 or text[start:offset] != line or tokenizer.encode(line) != ids[stable:end]:
        return None
    return LineStart(tuple(ids[:stable]), start)


class WarmUps:
    def __init__(self, models) -> None:  # models: the ModelHost
        self.models = models
        self._warm: dict[str, _Line] = {}

    def start(self, uri: str, prefixes: dict[str, list[int]], starts: dict[str, LineStart] | None = None) -> None:
        """Warm each prefix of `prefixes` ("quick" before "full", either may be missing) for
        `uri`, unless those prefixes are warm (or warming) already. `starts`: where the line
        after each prefix starts, for the keystrokes on it (`typed`)."""
        prefixes = {kind: ids for kind, ids in prefixes.items() if len(ids) >= MIN_WARM_TOKENS}
        if not prefixes:
            return
        key = hash(tuple((kind, tuple(ids)) for kind, ids in sorted(prefixes.items(), reverse=True)))
        line = self._warm.get(uri)
        if line is not None and line.key == key:
            line.starts.update({kind: s for kind, s in (starts or {}).items() if kind in prefixes})
            return
        for other in self._warm:
            self._stop(other)
        line = self._warm[uri] = _Line(key, starts={k: s for k, s in (starts or {}).items() if k in prefixes})
        for kind in ("quick", "full"):
            if kind in prefixes:
                stream = self.models.warm(prefixes[kind])
                if stream is not None:
                    line.streams[kind] = stream

    def line_start(self, uri: str) -> LineStart | None:
        """Where the document's line starts in the prompt a request would use now: the full
        one once its warm-up is done, before that the short one once its own is."""
        line = self._warm.get(uri)
        if line is None:
            return None
        for kind in ("full", "quick"):
            stream = line.streams.get(kind)
            if stream is not None and stream.done:
                return line.starts.get(kind)
        return None

    def typed(self, uri: str, ids: list[int]) -> None:
        """Warm `ids`, the prompt up to the cursor after a keystroke on the document's warm
        line, in place of the previous keystroke's."""
        line = self._warm.get(uri)
        if line is None:
            return
        previous = line.streams.pop("typed", None)
        if previous is not None and not previous.done:
            previous.cancel()
        stream = self.models.warm(ids, Priority.TYPING)  # not behind the full prompt's warm-up
        if stream is not None:
            line.streams["typed"] = stream

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
