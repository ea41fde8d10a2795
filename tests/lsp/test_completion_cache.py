from loopls.lsp.completion.cache import SuggestionCache

TEXT = "def f(x):\n    \nprint(f(2))\n"
CURSOR = TEXT.index("\n    \n") + 5


def _typed(s: str) -> tuple[str, int]:
    return TEXT[:CURSOR] + s + TEXT[CURSOR:], CURSOR + len(s)


def test_typing_a_prefix_of_the_suggestion_hits() -> None:
    cache = SuggestionCache()
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0), ("pass", 0)])
    assert cache.lookup("u", *_typed("ret")) == [("urn x + 1", 0)]
    assert cache.lookup("u", TEXT, CURSOR) == [("return x + 1", 0), ("pass", 0)]


def test_backspacing_and_retyping_reuse_earlier_suggestions() -> None:
    cache = SuggestionCache()
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0)])
    cache.store("u", *_typed("y"), [("ield x", 0)])  # the user typed "y" instead and got another suggestion
    assert cache.lookup("u", *_typed("yi")) == [("eld x", 0)]
    assert cache.lookup("u", TEXT, CURSOR) == [("return x + 1", 0)]  # backspace: the first one is back
    assert cache.lookup("u", *_typed("re")) == [("turn x + 1", 0)]


def test_diverging_text_or_other_documents_miss() -> None:
    cache = SuggestionCache()
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0)])
    assert cache.lookup("u", *_typed("y")) is None
    edited_after = TEXT[:CURSOR] + "ret" + TEXT[CURSOR:].replace("2", "3")
    assert cache.lookup("u", edited_after, CURSOR + 3) is None
    edited_before = "#" + TEXT
    assert cache.lookup("u", edited_before, CURSOR + 1) is None
    assert cache.lookup("other", TEXT, CURSOR) is None
    assert cache.lookup("u", *_typed("return x + 1")) is None  # fully typed: ask again


def test_the_replaced_auto_closed_characters_stay_with_the_rest() -> None:
    cache = SuggestionCache()
    text = "area()\n"
    cache.store("u", text, 5, [("radius)", 1)])
    assert cache.lookup("u", "area(ra)\n", 7) == [("dius)", 1)]


def test_entries_per_document_and_documents_are_bounded() -> None:
    cache = SuggestionCache(per_document=2, max_documents=2)
    for i, s in enumerate(("a", "b", "c")):
        cache.store("u", *_typed(s), [(f"item{i}", 0)])
    assert cache.lookup("u", *_typed("a")) is None  # the oldest entry went
    assert cache.lookup("u", *_typed("c")) == [("item2", 0)]
    for uri in ("x", "y"):
        cache.store(uri, TEXT, CURSOR, [("pass", 0)])
    assert cache.lookup("u", *_typed("c")) is None
    assert cache.lookup("y", TEXT, CURSOR) == [("pass", 0)]


def test_a_request_for_alternatives_is_not_answered_by_an_automatic_suggestion() -> None:
    cache = SuggestionCache()
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0)])  # an automatic request's one suggestion
    assert cache.lookup("u", TEXT, CURSOR, alternatives=True) is None  # M-] / Invoked: generate more
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0), ("pass", 0)], alternatives=True)
    assert cache.lookup("u", *_typed("re"), alternatives=True) == [("turn x + 1", 0)]
    assert cache.lookup("u", TEXT, CURSOR) == [("return x + 1", 0), ("pass", 0)]


def test_an_entry_hears_when_it_answers() -> None:
    cache = SuggestionCache()
    hits: list[int] = []
    cache.store("u", TEXT, CURSOR, [("return x + 1", 0)], on_hit=lambda: hits.append(1))
    assert cache.lookup("u", *_typed("z")) is None and not hits
    assert cache.lookup("u", *_typed("ret")) == [("urn x + 1", 0)] and hits == [1]
    cache.store("u", TEXT, CURSOR, [("return x + 2", 0)])  # made again at the same place: replaces it
    assert cache.lookup("u", TEXT, CURSOR) == [("return x + 2", 0)] and hits == [1]
