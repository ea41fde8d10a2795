"""Best-of-k line decoding on the native engine (`SamplingParams.best_of` > 1).

A small model's line completion goes wrong mostly at its first token: the right one is
often among the few most likely but not the most likely (docs/benchmarks.md). So the
request runs in two phases over the engine's ordinary request API:

1. The prompt is prefilled once, as a one-token request that returns the first step's
   `best_of` most likely tokens with their log-probabilities.
2. Each of those tokens is continued greedily by a request of its own, prompt + token: the
   prompt's K/V blocks, published in the prefix cache by phase 1, are shared by all of them
   (each recomputes only the prompt's last, partial block and its token), and the engine
   decodes them together as one batch until each reaches a stop.

The candidate with the best `best_of_score` (engine/model/rerank.py) is the answer; its
tokens are streamed when it is chosen, all at once. Cancelling the stream cancels every
request of the two phases. Only the native backend does this; the others answer greedily.

A first token that is a stop token, or whose text already holds a stop string, is a
finished candidate of its own. Stop strings are checked by the engine on each candidate's
continuation, without its first token (a stop string that spans the first token and the
next is not seen: the line's stop, "\\n", is a single character).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable

from ..model import rerank
from ..model.sampling_params import SamplingParams
from ..serving.priority import Priority
from ..serving.request_frontend import RequestFrontend, RequestStream
from ..serving.request_output import RequestOutput

_ids = itertools.count()


@dataclasses.dataclass
class Candidate:
    tokens: list[int]
    logprobs: list[float]
    finish_reason: str


class BestOfStream:
    """A `Stream` over a best-of-k request: the chosen candidate's tokens, then its output."""

    def __init__(self, engine: RequestFrontend, prompt_ids: list[int], params: SamplingParams, priority: Priority,
                 decode: Callable[..., str], eos_ids: frozenset[int], supersede: str | None = None) -> None:
        self.request_id = f"best-of-{next(_ids)}"
        self._engine, self._prompt, self._params, self._priority = engine, list(prompt_ids), params, priority
        self._decode, self._stops = decode, eos_ids | set(params.stop_token_ids)
        self._queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._streams: list[RequestStream] = []
        self._cancelled = False
        self._started = time.perf_counter()
        first = dataclasses.replace(params, max_tokens=1, logprobs=params.best_of, best_of=1)
        # Submitted now: a request that can never be served raises here, in the caller. It
        # takes the supersede key: a plain request of the key still running is cancelled.
        self._streams.append(engine.submit(prompt_ids, first, priority=priority, supersede=supersede))
        self._task = asyncio.ensure_future(self._run())

    def __aiter__(self) -> BestOfStream:
        return self

    async def __anext__(self) -> int:
        token = await self._queue.get()
        if token is None:
            self._queue.put_nowait(None)  # iterating again ends again
            raise StopAsyncIteration
        return token

    async def result(self) -> RequestOutput:
        return await asyncio.shield(self._task)

    @property
    def done(self) -> bool:
        return self._task.done()

    def when_done(self, callback: Callable[[], None]) -> None:
        self._task.add_done_callback(lambda _: callback())

    def cancel(self) -> None:
        """Cancel every request of the two phases (thread-safe, as the engine's cancel)."""
        self._cancelled = True
        for stream in self._streams:
            stream.cancel()

    async def _run(self) -> RequestOutput:
        try:
            out = await self._decode_candidates()
        except BaseException:
            self._queue.put_nowait(None)  # a reader is not left waiting
            raise
        if out.finish_reason in ("stop", "length"):  # a cancelled or failed request streams nothing
            for token in out.token_ids:
                self._queue.put_nowait(token)
        self._queue.put_nowait(None)
        return out

    async def _decode_candidates(self) -> RequestOutput:
        first = await self._streams[0].result()
        if first.finish_reason not in ("stop", "length") or not first.token_ids or self._params.max_tokens == 1:
            return dataclasses.replace(first, request_id=self.request_id)  # cancelled, failed, stopped or done
        if self._cancelled:
            return self._output(first, None, "cancelled", [])
        options = [(tok, lp) for tok, lp in first.top_logprobs[0] if lp > float("-inf")]
        candidates: list[Candidate] = []
        rest = dataclasses.replace(self._params, max_tokens=self._params.max_tokens - 1, best_of=1, logprobs=0,
                                   min_tokens=max(self._params.min_tokens - 1, 0))
        # the other candidates count only if they stop within OTHER_MAX_TOKENS (rerank.best)
        others = dataclasses.replace(rest, max_tokens=max(min(rest.max_tokens, rerank.OTHER_MAX_TOKENS - 1), 1))
        children: list[RequestStream | None] = []
        for i, (tok, lp) in enumerate(options):
            if tok in self._stops or self._hits_stop([tok]):
                candidates.append(Candidate([tok] if tok not in self._stops else [], [lp], "stop"))
                children.append(None)
                continue
            stream = self._engine.submit(self._prompt + [tok], rest if i == 0 else others, priority=self._priority)
            self._streams.append(stream)
            candidates.append(Candidate([tok], [lp], "stop"))
            children.append(stream)
        if self._cancelled:  # cancelled while the children were submitted: they go too
            self.cancel()
        outs = await asyncio.gather(*(s.result() for s in children if s is not None))
        it = iter(outs)
        failed = None
        for cand, stream in zip(candidates, children):
            if stream is None:
                continue
            out = next(it)
            cand.tokens += out.token_ids
            cand.logprobs += out.logprobs or []
            cand.finish_reason = out.finish_reason
            if out.finish_reason == "error":
                failed = out
        if failed is not None:
            return self._output(first, None, "error", candidates, failed.error)
        if self._cancelled or any(c.finish_reason == "cancelled" for c in candidates):
            return self._output(first, None, "cancelled", candidates)
        return self._output(first, self._choose(candidates), None, candidates)

    def _hits_stop(self, tokens: list[int]) -> bool:
        text = self._decode(tokens)
        return any(s in text for s in self._params.stop if s)

    def _choose(self, candidates: list[Candidate]) -> int:
        prompt_words = rerank.words(self._decode(self._prompt)) if self._params.best_of_score == "names" else frozenset()
        scored = [(c.logprobs, rerank.unknown_names(self._decode(c.tokens), prompt_words) if prompt_words else 0,
                   c.finish_reason == "stop") for c in candidates]
        return rerank.best(self._params.best_of_score, scored)

    def _output(self, first: RequestOutput, chosen: int | None, reason: str | None, candidates: list[Candidate],
                error: str | None = None) -> RequestOutput:
        """The request's output: the chosen candidate, or (cancelled, failed) the most likely
        first token's so far. Metrics: the prefill's, the time to the chosen line as
        `total_s`, how many candidates ran and their tokens."""
        pick = candidates[chosen if chosen is not None else 0] if candidates else Candidate(first.token_ids, [], "")
        metrics = dict(first.metrics)
        total = time.perf_counter() - self._started
        ttft = metrics.get("time_to_first_token_s") or 0.0
        metrics.update(total_s=total, decode_s=max(total - ttft, 0.0), best_of=len(candidates),
                       best_of_chosen=chosen, best_of_tokens=sum(len(c.tokens) for c in candidates))
        logprobs = pick.logprobs if self._params.logprobs is not None else None
        return RequestOutput(self.request_id, len(self._prompt), list(pick.tokens), reason or pick.finish_reason,
                             error, metrics, logprobs, None)
