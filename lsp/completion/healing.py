"""Token healing: the prompt's last token backed up, the first generated token made to extend it.

A prompt cut at the cursor often ends where the tokenizer never cuts in running text: a
byte-level BPE attaches the space before a word to the word (`return| value` is `return`,
` value`), and the last space of an indentation to the statement that follows, so a prefix
ending in `return ` or `\\n    ` ends on a token the model has rarely seen followed by a
word. It then tends to write a word that is not there (`return e`). Healing removes the
prompt's last piece of text and lets the model write it again, restricted to tokens that
start with it: ` value` is allowed after `return`, and the model chooses its word with the
space where training put it. What is backed up:

- after whitespace, its last character (the prefix re-encoded without it, so the rest of
  the whitespace run is tokenized as it is before a word);
- otherwise the prefix's last token (`self.proto|` backs up over `proto`).

The engine applies the restriction (`SamplingParams.allowed_first`); the suggestion is what
follows the removed text. A cursor right after a line break is left alone: the removed text
would be the line break itself, which a single-line completion stops at.

Only prompts without fill-in-the-middle tokens are healed, where the model continues the
buffer's text as running text. A FIM model sees the cursor's boundary in training already:
its middles are encoded on their own, after `<fim_middle>`, so a middle starts a token
wherever the cursor is. Measured on held-out line completions (docs/default-model.md):
healing FIM prompts moved edit similarity by -0.001 (SPM) and +0.015 (PSM) and exact match
by -1.4 and +1.4 points (72-73 targets), within the noise; healing plain prompts raised edit
similarity from 0.234 to 0.339 and exact match from 5.9% to 9.8% (51 targets).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from loopls.context.prompt import FimPrompt


@dataclass(frozen=True)
class Healing:
    ids: list[int]  # the prompt with the prefix backed up
    removed: str  # the text the generation starts with (not part of the suggestion)
    allowed: tuple[int, ...]  # the first tokens allowed: those whose text starts with `removed`

    def strip(self, raw: str) -> str | None:
        """The suggestion's text in a generation's text; None if it does not start with the
        removed text (the backend did not apply the restriction)."""
        return raw[len(self.removed):] if raw.startswith(self.removed) else None


class TokenTexts:
    """Every ordinary token's text, sorted, to find the tokens that start with a text."""

    def __init__(self, tokenizer) -> None:
        special = tokenizer.special.all_ids
        pairs = sorted((text, i) for i in range(tokenizer.vocab_size) if i not in special
                       for text in (tokenizer.decode([i]),) if text and "\ufffd" not in text)
        self.texts = [t for t, _ in pairs]
        self.ids = [i for _, i in pairs]

    def starting_with(self, text: str) -> tuple[int, ...]:
        lo = bisect.bisect_left(self.texts, text)
        hi = bisect.bisect_left(self.texts, text + "\U0010ffff", lo)
        return tuple(sorted(self.ids[lo:hi]))


def heal(ids: list[int], fim: FimPrompt, tokenizer, texts: TokenTexts) -> Healing | None:
    """`ids` (a packed prompt ending with the prefix of the window `fim`: a prompt without FIM
    tokens) with its prefix backed up, or None when there is nothing to heal, the prompt is a
    FIM one or it does not end with the prefix."""
    prefix, tokens = fim.prefix, fim.prefix_tokens
    if not prefix or not tokens or ids[len(ids) - len(tokens):] != tokens:
        return None  # a FIM prompt ends with <fim_middle>: see the module's note
    if prefix[-1].isspace():
        removed = prefix[-1]
        backed = tokenizer.encode(prefix[:-1])
    else:
        removed = tokenizer.decode(tokens[-1:])
        if not removed or not prefix.endswith(removed):  # a token holding part of a character
            return None
        backed = tokens[:-1]
    allowed = texts.starting_with(removed)
    if "\n" in removed or not allowed:
        return None
    return Healing(ids[:len(ids) - len(tokens)] + backed, removed, allowed)

