"""The other files' part of a prompt is kept while the user types on one line."""

from loopls.lsp.completion.sticky import StickyContext

TEXT = "import os\n\ndef f(x):\n    val\n    return x\n"
CURSOR = TEXT.index("val") + 3


def _ids(context: list[int], window: list[int]) -> tuple[list[int], int]:
    return context + window, len(context)


def test_typing_on_one_line_keeps_the_first_choice_of_other_files() -> None:
    sticky = StickyContext()
    ids, n = _ids([1, 2, 3], [50, 51])
    assert sticky.prompt("u", TEXT, CURSOR, ids, n, 2, budget=100) == (ids, 2)
    typed = TEXT[:CURSOR] + "u" + TEXT[CURSOR:]
    ids, n = _ids([7, 8], [50, 51, 52])  # the keystroke made the context engine choose otherwise
    assert sticky.prompt("u", typed, CURSOR + 1, ids, n, 1, budget=100) == ([1, 2, 3, 50, 51, 52], 2)


def test_another_line_an_edit_elsewhere_or_no_room_takes_the_new_choice() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100)
    other_line = TEXT.index("return x") + 8
    assert sticky.prompt("u", TEXT, other_line, *_ids([7], [60]), 1, budget=100) == ([7, 60], 1)
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100)
    edited = TEXT.replace("return x", "return y")  # after the cursor
    assert sticky.prompt("u", edited, CURSOR, *_ids([7], [60]), 1, budget=100) == ([7, 60], 1)
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2, 3], [50]), 1, budget=100)
    assert sticky.prompt("u", TEXT, CURSOR, *_ids([7], [60, 61, 62]), 1, budget=5) == ([7, 60, 61, 62], 1)
    assert sticky.prompt("other", TEXT, CURSOR, *_ids([9], [60]), 1, budget=100) == ([9, 60], 1)


def test_a_buffer_only_prompt_is_left_alone_and_documents_are_forgotten() -> None:
    sticky = StickyContext()
    sticky.prompt("u", TEXT, CURSOR, *_ids([1, 2], [50]), 1, budget=100)
    assert sticky.prompt("u", TEXT, CURSOR, [50, 51], 0, 0, budget=100) == ([50, 51], 0)
    assert len(sticky) == 1
    sticky.forget("u")
    assert len(sticky) == 0
