from loopls.lsp.completion_cache import CompletionCache

TEXT = "def f(x):\n    \nprint(f(2))\n"
CURSOR = TEXT.index("\n    \n") + 5


def test_typing_a_prefix_of_the_suggestion_hits() -> None:
    cache = CompletionCache()
    cache.store("u", TEXT, CURSOR, ["return x + 1", "pass"])
    typed = TEXT[:CURSOR] + "ret" + TEXT[CURSOR:]
    assert cache.lookup("u", typed, CURSOR + 3) == ["urn x + 1"]
    assert cache.lookup("u", TEXT, CURSOR) == ["return x + 1", "pass"]


def test_diverging_text_or_other_documents_miss() -> None:
    cache = CompletionCache()
    cache.store("u", TEXT, CURSOR, ["return x + 1"])
    wrong = TEXT[:CURSOR] + "y" + TEXT[CURSOR:]
    assert cache.lookup("u", wrong, CURSOR + 1) is None
    edited_after = TEXT[:CURSOR] + "ret" + TEXT[CURSOR:].replace("2", "3")
    assert cache.lookup("u", edited_after, CURSOR + 3) is None
    assert cache.lookup("other", TEXT, CURSOR) is None
    whole = TEXT[:CURSOR] + "return x + 1" + TEXT[CURSOR:]
    assert cache.lookup("u", whole, CURSOR + len("return x + 1")) is None  # fully typed: ask again


def test_least_recently_used_documents_are_dropped() -> None:
    cache = CompletionCache(max_documents=2)
    for uri in ("a", "b", "c"):
        cache.store(uri, TEXT, CURSOR, ["pass"])
    assert cache.lookup("a", TEXT, CURSOR) is None
    assert cache.lookup("c", TEXT, CURSOR) == ["pass"]
