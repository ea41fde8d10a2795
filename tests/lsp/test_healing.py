"""Token healing (lsp/completion/healing.py) with the shipped model's tokenizer: what is
backed up in a prompt without FIM tokens, which first tokens are allowed, and that FIM prompts
are left as they are."""

from __future__ import annotations

import dataclasses

import pytest

from loopls.context.prompt import build_fim_prompt, fim_token_ids
from loopls.engine.model.models import default_model_dir
from loopls.engine.model.tokenizer import Tokenizer
from loopls.lsp.completion.healing import TokenTexts, heal


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_folder(default_model_dir())


@pytest.fixture(scope="module")
def texts(tokenizer) -> TokenTexts:
    return TokenTexts(tokenizer)


def _prompt(tokenizer, text: str, layout: str | None):
    fim = build_fim_prompt(text, text.index("|"), tokenizer, 200)
    fim = dataclasses.replace(fim, suffix=fim.suffix[1:], suffix_tokens=tokenizer.encode(fim.suffix[1:]))
    special = tokenizer.special
    if layout is None:  # a model without FIM tokens: the prefix alone
        special = dataclasses.replace(special, fim_prefix=None, fim_suffix=None, fim_middle=None)
    head = tokenizer.encode("# header\n")
    return head + fim_token_ids(fim, special, layout or "psm"), fim, head


def test_after_a_space_its_last_character_is_written_again(tokenizer, texts) -> None:
    ids, fim, head = _prompt(tokenizer, "def f(value):\n    return |\n\nx = 1\n", None)
    healed = heal(ids, fim, tokenizer, texts)
    assert healed is not None and healed.removed == " "
    # the prompt is the same but for its prefix, which ends before the space
    assert healed.ids == head + tokenizer.encode("def f(value):\n    return") != ids
    assert tokenizer.encode(" value")[0] in healed.allowed  # the word with its space, as in running text
    assert all(tokenizer.decode([t]).startswith(" ") for t in healed.allowed)
    assert healed.strip(" value") == "value" and healed.strip("value") is None


def test_an_indentation_keeps_all_but_its_last_space(tokenizer, texts) -> None:
    ids, fim, _ = _prompt(tokenizer, "if x:\n    |\n", None)
    healed = heal(ids, fim, tokenizer, texts)
    assert healed.removed == " " and tokenizer.decode(healed.ids).endswith("if x:\n   ")


def test_inside_a_word_the_last_token_is_backed_up(tokenizer, texts) -> None:
    ids, fim, _ = _prompt(tokenizer, "self.proto|\n", None)
    healed = heal(ids, fim, tokenizer, texts)
    last = tokenizer.decode(fim.prefix_tokens[-1:])
    assert healed.removed == last and "self.proto".endswith(last)
    assert healed.ids == ids[:-1]  # the prefix's last token gone
    assert all(tokenizer.decode([t]).startswith(last) for t in healed.allowed)


@pytest.mark.parametrize("layout", ["psm", "spm"])
def test_fim_prompts_are_left_alone(tokenizer, texts, layout) -> None:
    ids, fim, _ = _prompt(tokenizer, "def f(value):\n    return |\n", layout)
    assert heal(ids, fim, tokenizer, texts) is None


def test_nothing_to_heal(tokenizer, texts) -> None:
    ids, fim, _ = _prompt(tokenizer, "x = 1\n|\n", None)  # after a line break: left alone
    assert heal(ids, fim, tokenizer, texts) is None
    ids, fim, _ = _prompt(tokenizer, "|x = 1\n", None)  # an empty prefix
    assert heal(ids, fim, tokenizer, texts) is None
    ids, fim, _ = _prompt(tokenizer, "return |\n", None)
    assert heal(ids[:-1], fim, tokenizer, texts) is None  # a prompt that is not this window's


def test_token_texts_find_every_extension(tokenizer, texts) -> None:
    got = set(texts.starting_with(" ret"))
    every = {i for i in range(tokenizer.vocab_size) if i not in tokenizer.special.all_ids
             and tokenizer.decode([i]).startswith(" ret")}
    assert got == every and tokenizer.encode(" return")[0] in got
