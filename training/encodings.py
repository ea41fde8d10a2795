"""Token ids of long texts assembled from remembered pieces, equal to encoding them whole.

Row building encodes the same source lines again and again: each sample's FIM window is a
few thousand lines' worth of text cut from a file that earlier samples have also drawn, and
the packer encodes it whole more than once while it fits the budget. A byte-level BPE
tokenizer (GPT-2 pre-tokenisation, merges within a pre-token only, no normaliser: what
training/bpe.py trains) never merges across a pre-token boundary, and one such boundary is
certain: inside a run of two or more whitespace characters between two non-whitespace ones,
right before the run's last character (GPT-2's `\\s+(?!\\S)` takes the run but its last
character, which then starts the next word's pre-token or stands alone). Cutting there, the
text's ids are its pieces' ids end to end; the pieces are mostly whole lines, remembered. A
text holding a special token's spelling is encoded whole: the tokenizer splits those out
before pre-tokenising, so whitespace next to one is a pre-token of its own.
`tests/training/test_encodings.py` checks the equality on real source.
"""

from __future__ import annotations

import re

# A whitespace run (of the characters every Unicode definition calls whitespace) of two or
# more, between characters no definition does: the cut goes before its last character.
_RUN = re.compile(r"(?<!\s)[ \t\r\n]{2,}(?=\S)")
MIN_CUT_TEXT = 256  # shorter texts are encoded directly (one or two lines: nothing to reuse)
CACHE_CHARS = 8_000_000  # remembered pieces' characters (a bound on a row builder's memory)


class PieceEncoder:
    """`encode(text)` as the tokenizer's, with the ids of the text's pieces remembered."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._specials = sorted({tokenizer.decode([i], skip_special=False) for i in tokenizer.special.all_ids} - {""})
        self._ids: dict[str, list[int]] = {}
        self._chars = 0

    def encode(self, text: str) -> list[int]:
        if len(text) < MIN_CUT_TEXT or any(s in text for s in self._specials):
            return self.tokenizer.encode(text)
        out: list[int] = []
        start = 0
        for m in _RUN.finditer(text):
            cut = m.end() - 1
            out += self._piece(text[start:cut])
            start = cut
        out += self._piece(text[start:])
        return out

    def _piece(self, piece: str) -> list[int]:
        ids = self._ids.get(piece)
        if ids is None:
            if self._chars + len(piece) > CACHE_CHARS:
                self._ids.clear()
                self._chars = 0
            ids = self._ids[piece] = self.tokenizer.encode(piece)
            self._chars += len(piece)
        return ids
