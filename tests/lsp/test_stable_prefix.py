"""The part of a completion prompt that the prefix-cache warm-up prefills: everything before
the cursor's line, in both fill-in-the-middle layouts (the shipped tokenizer's FIM ids)."""

import pytest

from loopls.engine.model.models import resolve_model_name
from loopls.engine.model.tokenizer import Tokenizer
from loopls.lsp.completion.warmup import line_start, stable_prefix

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


def test_a_keystrokes_prompt_up_to_the_cursor_is_the_next_prompt_less_its_fim_token(tokenizer) -> None:
    ids = _prompt(tokenizer, "spm", PREFIX)
    start = line_start(ids, stable_prefix(ids, tokenizer), PREFIX + SUFFIX, len(PREFIX), tokenizer)
    assert start is not None
    for typed in ("u", "urn", "urn 2 * 3.14 * r"):
        text = PREFIX + typed + SUFFIX
        assert start.prompt(text, len(PREFIX + typed), tokenizer) == _prompt(tokenizer, "spm", PREFIX + typed)[:-1]


def test_no_line_start_where_the_suffix_follows_the_line(tokenizer) -> None:
    ids = _prompt(tokenizer, "psm", PREFIX)
    assert line_start(ids, stable_prefix(ids, tokenizer), PREFIX + SUFFIX, len(PREFIX), tokenizer) is None


def test_no_line_start_where_the_prompts_line_is_not_the_documents(tokenizer) -> None:
    ids = _prompt(tokenizer, "spm", PREFIX)  # the prompt of another text (e.g. redacted)
    other = PREFIX.replace("    ret", "    yes") + SUFFIX
    assert line_start(ids, stable_prefix(ids, tokenizer), other, len(PREFIX), tokenizer) is None


def test_a_keystroke_that_left_the_line_or_typed_a_secret_warms_nothing(tokenizer) -> None:
    ids = _prompt(tokenizer, "spm", PREFIX)
    start = line_start(ids, stable_prefix(ids, tokenizer), PREFIX + SUFFIX, len(PREFIX), tokenizer)
    moved = PREFIX + "urn 1\n    x = 2" + SUFFIX  # Enter, then a new line
    assert start.prompt(moved, len(moved) - len(SUFFIX), tokenizer) is None
    key = "urn 'AKIA" + "IOSFODNN7EXAMPLE'"  # an AWS access key id: redaction would hide it
    secret = PREFIX + key + SUFFIX
    assert start.prompt(secret, len(PREFIX + key), tokenizer) is None
    plain = PREFIX + "urn 'AKIA'" + SUFFIX
    assert start.prompt(plain, len(PREFIX + "urn 'AKIA'"), tokenizer) is not None
