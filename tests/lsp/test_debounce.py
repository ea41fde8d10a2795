import random

from loopls.lsp.completion.debounce import ANSWER_BY_S, DELIVERY_S, MAX_DELAY_S, MIN_DELAY_S, TypingDebounce


def _type(debounce: TypingDebounce, uri: str, intervals: list[float], start: float = 100.0) -> float:
    now, delay = start, debounce.keystroke(uri, start)
    for gap in intervals:
        now += gap
        delay = debounce.keystroke(uri, now)
    return delay


def test_the_delay_follows_the_typing_rhythm_within_bounds() -> None:
    fast = _type(TypingDebounce(), "u", [0.05] * 40)
    slow = _type(TypingDebounce(), "u", [0.4] * 40)
    assert MIN_DELAY_S <= fast < slow <= MAX_DELAY_S
    assert fast == MIN_DELAY_S  # 50 ms between keys: the floor
    assert 0.4 < slow < 0.5  # steady 400 ms: a little more than the interval


def test_an_irregular_typist_waits_longer_than_their_mean() -> None:
    steady = _type(TypingDebounce(), "u", [0.13] * 60)
    irregular = _type(TypingDebounce(), "u", [0.06, 0.2] * 30)
    assert irregular > steady > 0.13


def test_pauses_do_not_count_as_typing_and_documents_are_separate() -> None:
    debounce = TypingDebounce()
    before = _type(debounce, "u", [0.08] * 30)
    after = _type(debounce, "u", [5.0, 0.08], start=1000.0)
    assert abs(after - before) < 0.02
    assert _type(debounce, "other", [0.6] * 30) > before
    assert _type(debounce, "u", [], start=2000.0) == before  # "other" did not change "u"


def test_pauses_between_bursts_leave_the_rhythm_alone() -> None:
    debounce = TypingDebounce()
    steady = _type(debounce, "u", [0.1] * 30)
    bursts = [0.1] * 10 + [0.6] + [0.1] * 10 + [0.45] + [0.1] * 10
    assert abs(_type(debounce, "u", bursts, start=500.0) - steady) < 0.01


def test_the_delay_sits_just_above_nearly_every_gap_of_the_typing_model() -> None:
    """The benchmark's typist: keys 60-200 ms apart, pauses of 300-1500 ms between bursts."""
    rng = random.Random(0)
    debounce, now, delays, gaps = TypingDebounce(), 0.0, [], []
    for _ in range(40):
        for _ in range(rng.randint(6, 30)):
            gap = rng.uniform(0.06, 0.2)
            now += gap
            delays.append(debounce.keystroke("u", now))
            gaps.append(gap)
        now += rng.uniform(0.3, 1.5)
    settled = delays[50:]
    assert all(0.17 <= d <= 0.23 for d in settled), (min(settled), max(settled))
    # at most about one gap in ten outlasts the delay (a request that may start generating)
    longer = sum(gap > delay for gap, delay in zip(gaps[51:], settled))
    assert longer <= 0.15 * len(settled)


def _bursts_of_two(gaps: list[float]) -> list[float]:
    """The same gaps, with a pause after every second key."""
    return [x for gap in gaps for x in (gap, 2.0)]


def test_the_time_to_a_first_token_overlaps_the_delay_only_where_another_key_is_unlikely() -> None:
    gaps = [0.06 + 0.14 * i / 23 for i in range(24)] * 2  # keys 60-200 ms apart, evenly
    debounce = TypingDebounce()
    for seconds in (0.04, 0.05, 0.045):
        debounce.first_token(seconds)
    # long bursts: after one of the slowest usual gaps another key is still far likelier than
    # a pause, so a generation started there would nearly always be cancelled
    assert _type(debounce, "u", gaps) == _type(TypingDebounce(), "u", gaps)
    # a pause after every second key: late in the rhythm a pause is as likely as a key, and
    # the generation starts part of a first-token time sooner
    plain = _type(TypingDebounce(), "v", _bursts_of_two(gaps))
    early = _type(debounce, "v", _bursts_of_two(gaps))
    assert plain - 0.045 < early < plain - 0.01
    for _ in range(8):
        debounce.first_token(2.0)  # a loaded machine: slow first tokens
    floor = _type(debounce, "w", _bursts_of_two(gaps))
    median = sorted(gaps[:24])[11]
    assert floor >= median + 0.02 - 1e-9  # ... never inside the user's ordinary gaps
    steady = TypingDebounce()
    steady.first_token(0.05)
    assert _type(steady, "u", [0.08] * 30) > 0.08  # a steady typist's keys still supersede at no cost


def test_the_chance_of_another_key_follows_how_often_the_user_pauses() -> None:
    gaps = [0.06 + 0.14 * i / 23 for i in range(24)]
    rare, often = TypingDebounce(), TypingDebounce()
    _type(rare, "u", gaps * 4)
    _type(often, "u", _bursts_of_two(gaps * 2))
    assert abs(rare._docs["u"].likely_typing_until() - max(gaps)) < 1e-9  # the slowest gap
    assert rare._docs["u"].likely_typing_until() > often._docs["u"].likely_typing_until() > min(gaps)


def _bursts(debounce: TypingDebounce, pauses: list[float], uris: tuple[str, ...] = ("u",)) -> None:
    """Bursts of ten keys 100 ms apart, the `pauses` between them, the bursts taking turns
    over `uris`."""
    now = 0.0
    for n, pause in enumerate(pauses):
        for _ in range(10):
            now += 0.1
            debounce.keystroke(uris[n % len(uris)], now)
        now += pause


def test_a_long_suggestion_is_answered_before_nearly_every_pause_of_the_user_ends() -> None:
    debounce = TypingDebounce()
    assert debounce.answer_by() == ANSWER_BY_S  # nothing learned yet: the P95 goal
    rng = random.Random(0)
    pauses = [rng.uniform(0.3, 1.5) for _ in range(60)]
    _bursts(debounce, pauses)
    limit = debounce.answer_by()
    # the pause that 95% of this user's (recent) pauses outlast, less the way to the editor
    outlasted = sum(pause + 0.1 >= limit + DELIVERY_S - 1e-9 for pause in pauses[-59:])
    assert 0.3 < limit < ANSWER_BY_S and outlasted >= 0.95 * 59, (limit, outlasted)
    slow = TypingDebounce()
    _bursts(slow, [3.0] * 10)
    assert slow.answer_by() == ANSWER_BY_S  # long pauses: no later than the goal


def test_pauses_are_measured_across_documents() -> None:
    one, several = TypingDebounce(), TypingDebounce()
    _bursts(one, [0.4] * 12)
    _bursts(several, [0.4] * 12, uris=("a", "b", "c"))  # each burst in another file, 0.4 s after the last key
    assert abs(several.answer_by() - one.answer_by()) < 1e-9
    assert abs(one.answer_by() - (0.5 - DELIVERY_S)) < 1e-9
