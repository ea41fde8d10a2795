"""When post-processing leaves nothing of the greedy text: the next most likely first tokens.

A small model's line goes wrong mostly at its first token (engine/backends/best_of.py): after
`shared: Counter[str]` it writes ` += 1`, which the line check rejects, where ` = Counter()`
was its second choice. Dropping the candidate leaves the pause empty. Instead, for the
greedy candidate the filters rejected, the service asks the engine for the first step's
most likely tokens (a one-token request: the prompt is in the prefix cache, so it computes
the prompt's last block only), continues the `ALTERNATIVES` most likely others greedily, as
one batch over the shared prompt, and shows the most likely of them that post-processing
keeps (every filter and the line check apply to them as to the greedy text, and one the
token limit cut before its line ended, which the check cannot judge, is not shown: on a
held-out file an alternative wrote `str, str], t: Tuple[str, str], t: Tuple[...` until the
limit, a loop the repetition filter does not see). A token less
likely than `MIN_PROBABILITY`, or than `RELATIVE` times the rejected one, is no candidate (a
first token the model hardly believes in makes a suggestion nobody wants: after a decorator
typed into a function body, `: int  # commits that hashes`, 7% likely against 27%), nor is
a stop token, nor, at a site whose request stops at a line break, a token holding one (it
would end the suggestion at once) unless the greedy text could start with it too (a line
break and indentation at the end of a line of code: the next line, `postprocess.next_line`).

Only for a greedy request at a site whose line parsed (the line check guards what the
alternatives write), on the native engine (the remote backends report no log-probabilities:
with them nothing changes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable

from loopls.engine.backends.base import RequestOutput, SamplingParams

ALTERNATIVES = 2  # next most likely first tokens continued
MIN_PROBABILITY = 0.05  # of an alternative first token
RELATIVE = 1 / 3  # of the rejected first token's probability, at least
_PROBED = ALTERNATIVES + 3  # tokens asked for: the rejected one and a few that may not qualify

Generate = Callable[[list[int], SamplingParams], Awaitable[RequestOutput]]


def probe_params(params: SamplingParams) -> SamplingParams:
    """The one-token request that reports the first step's most likely tokens (stop tokens
    left out: `min_tokens` bans them at the first step)."""
    return dataclasses.replace(params, max_tokens=1, temperature=0.0, top_p=1.0, seed=None, min_tokens=1,
                               logprobs=_PROBED, best_of=1)


def first_tokens(probe: RequestOutput, rejected: int | None, allowed: Callable[[int], bool]) -> list[int]:
    """The alternatives to continue, most likely first: of the probe's first step, those other
    than `rejected` (the greedy text's first token) that `allowed` admits, with a probability
    of `MIN_PROBABILITY` at least and `RELATIVE` of the rejected token's (of the most likely
    one's, when the rejected one is not among those reported)."""
    if probe.finish_reason not in ("stop", "length") or not probe.top_logprobs or not probe.top_logprobs[0]:
        return []
    top = probe.top_logprobs[0]
    first = next((logprob for token, logprob in top if token == rejected), top[0][1])
    floor = max(math.log(MIN_PROBABILITY), first + math.log(RELATIVE))
    found = [token for token, logprob in top if token != rejected and logprob >= floor and allowed(token)]
    return found[:ALTERNATIVES]


def continue_params(params: SamplingParams) -> SamplingParams:
    """An alternative's continuation: greedy, one token fewer (its first token is written)."""
    return dataclasses.replace(params, max_tokens=max(params.max_tokens - 1, 1), temperature=0.0, top_p=1.0,
                               seed=None, min_tokens=0, logprobs=None, best_of=1)


async def alternatives(generate: Generate, prompt: list[int], params: SamplingParams, rejected: int | None,
                       allowed: Callable[[int], bool]) -> tuple[list[tuple[int, RequestOutput]], int]:
    """The alternatives to the greedy text whose first token was `rejected`, most likely first:
    (first token, the output of its continuation) each; and the tokens the probe generated.
    `generate(ids, params)` runs one engine request to its end."""
    probe = await generate(prompt, probe_params(params))
    tokens = first_tokens(probe, rejected, allowed)
    if not tokens:
        return [], len(probe.token_ids)
    rest = continue_params(params)
    outs = await asyncio.gather(*(generate(prompt + [token], rest) for token in tokens))
    return [(token, out) for token, out in zip(tokens, outs)], len(probe.token_ids)
