"""The part of a completion prompt that the prefix-cache warm-up prefills: everything before
the cursor's line, in both fill-in-the-middle layouts (the shipped tokenizer's FIM ids)."""

import pytest

from loopls.engine.model.models import resolve_model_name
from loopls.engine.model.tokenizer import Tokenizer
from loopls.lsp.completion.warmup import stable_prefix

PREFIX = "def area(r):\n    return 3.14 * r * r\n\ndef perimeter(r):\n    ret"
SUFFIX = "\n\nprint(area(2))\n"


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_folder(resolve_model_name(None))


def _prompt(tokenizer: Tokenizer, layout: str, prefix: str) -> list[int]:
    s = tokenizer.special
    context = tokenizer.encode("# other.py\nx = 1\n")
    if layout == "spm":
        return [*context, s.fim_suffix, *tokenizer.encode(SUFFIX), s.fim_prefix, *tokenizer.encode(prefix),
                s.fim_middle]
    return [*context, s.fim_prefix, *tokenizer.encode(prefix), s.fim_suffix, *tokenizer.encode(SUFFIX),
            s.fim_middle]


@pytest.mark.parametrize("layout", ["psm", "spm"])
def test_the_warmed_part_ends_at_the_cursors_line_and_survives_typing_on_it(tokenizer, layout) -> None:
    ids = _prompt(tokenizer, layout, PREFIX)
    stable = stable_prefix(ids, tokenizer)
    # the line break's token may carry the line's indentation: then it is left out
    assert tokenizer.decode(ids[:stable]).endswith(("def perimeter(r):\n", "def perimeter(r):"))
    typed = _prompt(tokenizer, layout, PREFIX + "urn 2")
    assert typed[:stable] == ids[:stable]
    if layout == "spm":  # the text after the cursor comes first: it is warmed too
        assert SUFFIX.strip() in tokenizer.decode(ids[:stable])


def test_a_prompt_without_fim_tokens_warms_nothing(tokenizer) -> None:
    assert stable_prefix(tokenizer.encode(PREFIX), tokenizer) == 0


@pytest.mark.parametrize("layout", ["psm", "spm"])
def test_the_first_character_on_an_indented_blank_line_keeps_the_warmed_part(tokenizer, layout) -> None:
    blank = PREFIX[:-len("ret")]  # the cursor after the indentation of a new line
    ids = _prompt(tokenizer, layout, blank)
    stable = stable_prefix(ids, tokenizer)
    assert tokenizer.decode(ids[:stable]).endswith(("def perimeter(r):\n", "def perimeter(r):"))
    for typed in ("r", "v", "x = "):
        assert _prompt(tokenizer, layout, blank + typed)[:stable] == ids[:stable]
