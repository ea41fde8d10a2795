"""Which of the model's next most likely first tokens replace a greedy text post-processing
dropped (pure logic; the server end to end: test_completion_lsp.py)."""

from __future__ import annotations

import math

from loopls.engine.backends.base import RequestOutput, SamplingParams
from loopls.lsp.completion.next_best import (ALTERNATIVES, MIN_PROBABILITY, RELATIVE, continue_params,
                                             first_tokens, probe_params)


def _probe(top: list[tuple[int, float]], reason: str = "stop") -> RequestOutput:
    return RequestOutput("probe", 10, [top[0][0]] if top else [], reason, top_logprobs=[top])


def test_the_most_likely_others_are_continued_in_order() -> None:
    top = [(5, math.log(0.3)), (7, math.log(0.2)), (9, math.log(0.12)), (11, math.log(0.11))]
    assert first_tokens(_probe(top), 5, lambda t: True) == [7, 9, 11][:ALTERNATIVES]
    # the rejected token need not be the probe's first (another batch may round differently)
    assert first_tokens(_probe(top), 7, lambda t: True) == [5, 9, 11][:ALTERNATIVES]


def test_unlikely_disallowed_and_missing_tokens_are_no_alternatives() -> None:
    top = [(5, math.log(0.2)), (7, math.log(MIN_PROBABILITY / 2)), (9, math.log(0.08))]
    assert first_tokens(_probe(top), 5, lambda t: True) == [9]
    # far less likely than the rejected token: `: int  # ...` after a decorator, 7% against 27%
    assert first_tokens(_probe([(5, math.log(0.27)), (9, math.log(0.27 * RELATIVE * 0.9))]), 5, lambda t: True) == []
    assert first_tokens(_probe([(5, math.log(0.27)), (9, math.log(0.27 * RELATIVE * 1.1))]), 5, lambda t: True) == [9]
    # the rejected token not reported: relative to the most likely one
    assert first_tokens(_probe([(7, math.log(0.6)), (9, math.log(0.1))]), 5, lambda t: True) == [7]
    assert first_tokens(_probe(top), 5, lambda t: t != 9) == []  # e.g. a line break at a one-line site
    assert first_tokens(_probe(top, "cancelled"), 5, lambda t: True) == []
    assert first_tokens(RequestOutput("probe", 10, [5], "stop"), 5, lambda t: True) == []  # no log-probabilities


def test_the_probe_asks_for_one_token_and_the_continuations_are_greedy() -> None:
    params = SamplingParams(max_tokens=32, temperature=0.0, min_tokens=1, stop=("\n",), stop_token_ids=(2,),
                            best_of=3)
    probe = probe_params(params)
    assert probe.max_tokens == 1 and probe.logprobs > ALTERNATIVES and probe.best_of == 1
    assert probe.min_tokens == 1 and probe.stop_token_ids == (2,)  # stop tokens are no alternatives
    rest = continue_params(params)
    assert rest.max_tokens == 31 and rest.stop == ("\n",) and rest.best_of == 1 and rest.logprobs is None
