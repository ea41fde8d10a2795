"""The other files' part of a prompt is kept while the user types on one line, and on a
move to a line inside the file window it was chosen for."""

from loopls.lsp.completion.sticky import StickyContext

TEXT = "import os\n\ndef f(x):\n    val\n    return x\n" + "".join(f"y{i} = {i}\n" for i in range(60))
CURSOR = TEXT.index("val") + 3
RETURN = TEXT.index("return x") + 8  # the line after the cursor's
FAR = TEXT.index("y15 = 15") + 8  # line 20
FARTHER = TEXT.index("y40 = 40") + 8  # line 45: 42 lines from the cursor's


def _ids(context: list[int], window: list[int]) -> tuple[list[int], int]:
    return context + window, len(context)


def test_typing_on_one_line_keeps_the_first_choice_of_other_files() -> None:
    sticky = StickyContext()
    ids, n = _ids([1, 2, 3], [50, 51])
    assert sticky.prompt("u", TEXT, CURSOR, ids, n, 2, budget=100) == (ids, 2)
    typed = TEXT[:CURSOR] + "u" + TEXT[CURSOR:]
    ids, n = _ids([7, 8], [50, 51, 52])  # the keystroke made the context engine choose otherwise
    assert sticky.prompt("u", typed, CURSOR + 1, ids, n, 1, budget=100) == ([1, 2, 3, 50, 51, 52], 2)
    assert sticky.counts["chosen"] == 1 and sticky.counts["same_line"] == 1
    assert sticky.counts["context_tokens"] == 3 + 3 and sticky.counts["window_tokens"] == 2 + 3


def test_a_line_inside_the_window_keeps_the_choice_one_outside_takes_the_new_one() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100, window=(0, 6))
    assert sticky.prompt("u", TEXT, RETURN, *_ids([7], [60]), 1, budget=100, window=(1, 7)) == ([1, 2, 3, 60], 1)
    # the window is the one the choice was made for, not the newest request's
    assert sticky.prompt("u", TEXT, FAR, *_ids([8], [61]), 2, budget=100, window=(14, 24)) == ([8, 61], 2)
    assert sticky.prompt("u", TEXT, RETURN, *_ids([9], [62]), 1, budget=100, window=(0, 8)) == ([9, 62], 1)
    assert sticky.counts == {"chosen": 3, "nearby": 1, "nearby_differs": 1, "context_tokens": 8, "window_tokens": 4}


def test_a_line_far_from_where_the_choice_was_made_takes_the_new_one_even_inside_the_window() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100, window=(0, 60))
    assert sticky.prompt("u", TEXT, FAR, *_ids([1, 2, 3], [60]), 1, budget=100) == ([1, 2, 3, 60], 1)
    assert sticky.prompt("u", TEXT, FARTHER, *_ids([7], [61]), 1, budget=100) == ([7, 61], 1)
    assert sticky.counts["nearby"] == 1 and "nearby_differs" not in sticky.counts


def test_without_a_window_another_line_takes_the_new_choice_and_so_does_no_room() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100)
    assert sticky.prompt("u", TEXT, RETURN, *_ids([7], [60]), 1, budget=100) == ([7, 60], 1)
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100, window=(0, 30))
    assert sticky.prompt("u", TEXT, CURSOR, *_ids([7], [60, 61, 62]), 1, budget=5) == ([7, 60, 61, 62], 1)
    assert sticky.prompt("u", TEXT, RETURN, *_ids([7], [63]), 1, budget=100) == ([7, 63], 1)
    assert sticky.counts["new_line_same"] == 1  # the same choice on a new line, made anyway
    assert sticky.prompt("other", TEXT, CURSOR, *_ids([9], [60]), 1, budget=100) == ([9, 60], 1)


def test_a_buffer_only_prompt_is_left_alone_and_documents_are_forgotten() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2], [50]), 1, budget=100)
    assert sticky.prompt("u", TEXT, CURSOR, [50, 51], 0, 0, budget=100) == ([50, 51], 0)
    assert len(sticky) == 1
    sticky.forget("u")
    assert len(sticky) == 0
