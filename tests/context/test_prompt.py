"""FIM prompts from the buffer within an exact token budget."""

from __future__ import annotations

import random

import pytest

from loopls.context.prompt import FIM_OVERHEAD_TOKENS, build_fim_prompt, fim_token_ids


@pytest.fixture(scope="module")
def tokenizer(tiny_lm):
    return tiny_lm.tokenizer


SOURCE = "".join(f"def function_{i}(x):\n    return x * {i} + helper_{i}(x)\n\n" for i in range(200))


def test_small_document_is_kept_whole(tokenizer) -> None:
    text = "a = 1\nb = 2\n"
    p = build_fim_prompt(text, 6, tokenizer, 1000)
    assert (p.prefix, p.suffix, p.truncated) == ("a = 1\n", "b = 2\n", False)
    assert p.prefix_tokens == tokenizer.encode("a = 1\n")


@pytest.mark.parametrize("budget", [16, 40, 100, 257, 1000, 4000])
def test_budget_is_never_exceeded(tokenizer, budget: int) -> None:
    rng = random.Random(budget)
    for _ in range(20):
        offset = rng.randrange(len(SOURCE) + 1)
        p = build_fim_prompt(SOURCE, offset, tokenizer, budget)
        exact = len(tokenizer.encode(p.prefix)) + len(tokenizer.encode(p.suffix)) + FIM_OVERHEAD_TOKENS
        assert exact == p.tokens <= budget
        # the kept text touches the cursor on both sides
        assert SOURCE[:offset].endswith(p.prefix)
        assert SOURCE[offset:].startswith(p.suffix)


def test_truncation_keeps_whole_lines_and_favours_the_prefix(tokenizer) -> None:
    offset = SOURCE.index("def function_100")
    p = build_fim_prompt(SOURCE, offset, tokenizer, 400)
    assert p.truncated
    assert p.prefix.startswith("def ") or p.prefix.startswith("    ") or p.prefix.startswith("\n")
    assert p.suffix.endswith("\n")
    assert len(p.prefix_tokens) > len(p.suffix_tokens)
    assert len(p.suffix_tokens) <= int((400 - FIM_OVERHEAD_TOKENS) * 0.25)


def test_unused_suffix_budget_goes_to_prefix(tokenizer) -> None:
    offset = len(SOURCE) - 10
    p = build_fim_prompt(SOURCE, offset, tokenizer, 400)
    # the prefix takes more than its 75% share because the suffix is short
    assert len(p.prefix_tokens) > (400 - FIM_OVERHEAD_TOKENS) * 0.75 + 20
    assert p.tokens > 400 - 30


def test_a_single_huge_line_is_cut_by_characters(tokenizer) -> None:
    text = "x = [" + ", ".join(str(i) for i in range(5000)) + "]"
    p = build_fim_prompt(text, len(text), tokenizer, 50)
    assert 0 < p.tokens <= 50
    assert text.endswith(p.prefix)


def test_invalid_arguments(tokenizer) -> None:
    with pytest.raises(ValueError, match="outside the text"):
        build_fim_prompt("abc", 10, tokenizer, 100)
    with pytest.raises(ValueError, match="too small"):
        build_fim_prompt("abc", 1, tokenizer, 2)


def test_fim_layout_uses_checkpoint_ids(tokenizer) -> None:
    p = build_fim_prompt("a = 1\nb = 2\n", 6, tokenizer, 100)
    s = tokenizer.special
    ids = fim_token_ids(p, s)
    assert ids[0] == s.fim_prefix and ids[-1] == s.fim_middle
    assert ids[1 + len(p.prefix_tokens)] == s.fim_suffix
    assert ids[1:1 + len(p.prefix_tokens)] == p.prefix_tokens


def test_an_anchored_prefix_starts_at_the_same_line_while_the_user_types(tokenizer) -> None:
    offset = SOURCE.index("def function_150")
    starts = set()
    for typed in range(0, 60):  # type a line character by character
        text = SOURCE[:offset] + "y" * typed + SOURCE[offset:]
        p = build_fim_prompt(text, offset + typed, tokenizer, 400, anchor_lines=8)
        starts.add(offset + typed - len(p.prefix))
        assert p.tokens <= 400
    assert len(starts) <= 2  # without the anchor it moves every few keystrokes
    plain = {offset + t - len(build_fim_prompt(SOURCE[:offset] + "y" * t + SOURCE[offset:], offset + t, tokenizer,
                                               400).prefix) for t in range(0, 60)}
    assert len(plain) > len(starts)


def test_suffix_prefix_middle_layout(tokenizer) -> None:
    p = build_fim_prompt("a = 1\nb = 2\n", 6, tokenizer, 100)
    s = tokenizer.special
    ids = fim_token_ids(p, s, "spm")
    assert ids == [s.fim_suffix, *p.suffix_tokens, s.fim_prefix, *p.prefix_tokens, s.fim_middle]
    assert len(ids) == p.tokens
    with pytest.raises(ValueError, match="unknown FIM layout"):
        fim_token_ids(p, s, "pms")
