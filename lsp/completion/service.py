"""One completion path for the server's handlers and `loopls complete`.

`CompletionService.complete` takes a document snapshot (URI, version, path, text) and the
cursor, and returns suggestions or None:

1. A suggestion the user is typing through (or backspaced to) comes from the cache at once.
2. A keystroke that types what a generation still running for the document is writing
   keeps it (`flight.py`): the request waits on it and answers with the rest. Any other
   keystroke cancels it, and so does a request for another document (`flights.py` owns
   the generations in flight and books every cancel by reason).
3. Automatic requests wait the document's adaptive debounce; a request superseded meanwhile
   (a newer keystroke for the document, or `$/cancelRequest`) ends without generating.
4. The prompt is built on the prepare thread while the debounce runs (for a keystroke on
   the line of the previous one, only in its last part: `prompt_clock.py`), by `prompts.py`:
   the context engine's packed prompt when the project is indexed, else the buffer's own
   FIM window; redacted either way and checked once more, decoded, before it is sent. The
   part before the cursor's line is prefilled into the engine's prefix cache once per line
   (a warm-up), and once that is warm each keystroke on the line warms the prompt up to the
   cursor (the line's text, redacted first), so the request after the pause computes only
   the last cache block and the FIM token; a request waits for a warm-up still running
   instead of computing the same tokens again.
   On a CPU a new line's warm-up takes a second or more, and a pause often ends sooner: an
   automatic request whose full prompt is not warm yet is answered from a short prompt
   (the file window alone), whose own warm-up ran first and took a fraction of that; the
   full prompt's warm-up goes on for the next request.
5. The engine generates (several sampled candidates when the user asked explicitly), streaming
   its tokens: a single-line site stops at the line break (a stop string of the engine
   request), a multi-line one as soon as post-processing says more text cannot be shown,
   or, for an automatic request, after a line or two (`postprocess.token_limit`: it must
   arrive within the pause).
   Meanwhile the server's background work waits (`quiet`: the project thread's queued
   smell checks and symbol updates), so that the engine's thread has the interpreter.
6. Post-processing (`postprocess.finish`) cleans each candidate for its site; a candidate
   that would put a secret-looking string into the document is dropped and logged. When it
   leaves nothing of a greedy candidate, the model's next most likely first tokens are
   continued and the first whose text it keeps is shown instead (`next_best.py`).
7. An automatic request at a multi-line site does not wait for the whole block past the
   debounce's `answer_by()` (learned from the user's pauses: the answer must come before
   the pause ends): it answers with the complete lines written so far, post-processed like
   a whole suggestion (`postprocess.answered_part`), as soon as there are any. The
   generation runs on to its end and its whole suggestion replaces that part in the cache:
   accepting or typing through the lines shown, or asking again at the same place, gets the
   rest (and a request made while it still runs waits for it, as in step 2). An explicit
   request waits for everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ContextManager

from loopls.context.privacy import inserted_secret
from loopls.engine.backends import Backend
from loopls.engine.backends.base import Priority, RequestOutput, SamplingParams

from ..model_host import ModelHost, ModelUnavailable
from ..options import CompletionOptions
from .cache import Snapshot, SuggestionCache
from .debounce import TypingDebounce
from .flight import Flight
from .flights import Flights
from . import next_best
from .postprocess import (Site, Suggestion, answered_part, complete_lines, finish, is_final, next_line,
                          single_line, token_limit)
from .prompt_clock import PromptClock
from .prompts import CompletionRequest, ContextProvider, Prepared, PromptBuilder
from .warmup import WarmUps
from .waste import WasteLedger

__all__ = ["CompletionRequest", "CompletionService", "Completions", "ContextProvider"]

log = logging.getLogger(__name__)
SAMPLED_TEMPERATURE = 0.8  # the extra candidates of an explicit request

@dataclass(frozen=True)
class Completions:
    suggestions: list[Suggestion]
    cached: bool
    prompt_tokens: int = 0
    context_files: int = 0  # other files the prompt quoted (0: the buffer alone)


@dataclass
class ServiceStats:
    requests: int = 0
    prompts: int = 0  # prompts built (a keystroke superseded early in its debounce builds none)
    cache_hits: int = 0
    debounced: int = 0  # superseded while waiting: no generation started
    cancelled: int = 0  # generations cancelled ($/cancelRequest, a divergent keystroke or token)
    typed_through: int = 0  # requests answered by a generation that an earlier keystroke started
    kept: int = 0  # generations that outlived the keystroke after theirs (its text matched theirs)
    secrets_dropped: int = 0
    empty: int = 0  # generations that ended with nothing to show (post-processing dropped every candidate)
    quick: int = 0  # generations from the short prompt: the line's full prompt was not warm yet
    typed_warmups: int = 0  # keystrokes whose prompt up to the cursor was warmed (warmup.py)
    next_best: int = 0  # greedy candidates post-processing dropped, replaced by another first token's
    last_replaced: str = ""  # the newest request's: the greedy text an alternative replaced ("": none)
    early: int = 0  # answers made of the complete lines of a generation still running (step 7)
    shown_tokens: int = 0  # generated tokens that answers showed (each token once)
    last_answer_tokens: int = 0  # of those, the ones the newest answer showed first
    context: dict = field(default_factory=dict)  # the other files' part across requests (sticky.py)
    last_null: str = ""  # why the newest request that answered nothing did: see `CompletionService._null`
    newest: str = ""  # where the newest request is: debounce, prompt, warm-up, generating, answered, null
    newest_tokens: int = 0  # what its generation has written so far (tokens)
    last_timings_ms: dict = field(default_factory=dict)  # of the last generated suggestion, by phase
    last_engine: dict = field(default_factory=dict)  # its prompt, cache hit and engine times


class CompletionService:
    def __init__(self, models: ModelHost, thread: Executor, options: Callable[[], CompletionOptions],
                 context: ContextProvider | None = None, label: Callable[[str | None], str | None] = lambda p: p,
                 debounce: bool = True, quiet: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        self.models = models
        self.thread = thread  # the prepare thread: prompt building and site reading
        self.options = options
        self.debounce = TypingDebounce() if debounce else None
        self.cache = SuggestionCache()
        self.stats = ServiceStats()
        self.flights = Flights(self.stats, quiet)
        # Short prompts serve pauses of typing: a one-shot caller (`loopls complete`, the
        # evaluation) has no debounce and waits for the full prompt's answer.
        self._prompts = PromptBuilder(models, context, label, self.stats.context, quick=debounce)  # prepare thread
        self._latest: dict[str, object] = {}  # uri -> ticket of its newest request
        self._warmups = WarmUps(models)
        self._clock = PromptClock()

    @property
    def waste(self) -> WasteLedger:
        """The ledger of wasted tokens (`waste.py`), kept by the generations in flight."""
        return self.flights.waste

    async def complete(self, req: CompletionRequest) -> Completions | None:
        options = self.options()
        if not options.enabled:
            return None
        self.stats.requests += 1
        started = time.perf_counter()
        delay = 0.0 if req.invoked or self.debounce is None else self.debounce.keystroke(req.uri, time.monotonic())
        flight = self.flights.for_request(req.uri, req.text, req.offset, req.invoked,
                                          lambda: self.debounce is not None and self.debounce.resumed(req.uri))
        ticket = self._latest[req.uri] = object()
        self.stats.last_answer_tokens = 0  # a cache hit may show tokens for the first time (`_store`)
        self.stats.last_replaced = ""
        cached = self.cache.lookup(req.uri, req.text, req.offset, alternatives=req.invoked and options.candidates > 1)
        if cached is not None:
            self.stats.cache_hits += 1
            return Completions([Suggestion(text, replace) for text, replace in cached], cached=True)
        if flight is not None:
            self.stats.newest = "typing through"
            cached = await self._wait(flight, req, started)
            if self._latest.get(req.uri) is not ticket:
                return self._null("superseded")  # a newer keystroke waits on the same generation, or cancelled it
            if cached is None:  # the generation ended (and was stored)
                cached = self.cache.lookup(req.uri, req.text, req.offset)
            if cached is not None:  # what follows the typed text: of the whole suggestion, or of its lines so far
                self.stats.typed_through += 1
                return Completions([Suggestion(text, replace) for text, replace in cached], cached=False)
            # it diverged at the end (or post-processing cut it short): generate for this request
        backend = await self.models.ready()
        if backend is None:
            return self._null("no model")  # the model cannot be loaded: reported once, by the host, not per keystroke
        delay -= time.perf_counter() - started  # time spent waiting on a kept generation counts
        self.stats.newest = "debounce"
        if self._clock.same_line(req.uri, req.text, req.offset):  # built just in time (prompt_clock.py)
            self._warm_typed(req, ticket, backend)
            ahead = delay - self._clock.lead()
            if ahead > 0:
                await asyncio.sleep(ahead)
                delay -= ahead
            if self._latest.get(req.uri) is not ticket:
                self.stats.debounced += 1
                return self._null("superseded")
        loop = asyncio.get_running_loop()
        prepared = loop.run_in_executor(self.thread, self._prepare, req, ticket, backend, options)
        prepared.add_done_callback(_retrieve)
        prepared.add_done_callback(lambda f: self._warm_up(req.uri, f))  # the line's warm-up
        if delay > 0:
            await asyncio.sleep(delay)
        if self._latest.get(req.uri) is not ticket:
            self.stats.debounced += 1
            return self._null("superseded")
        waited = time.perf_counter()
        self.stats.newest = "prompt"
        prep = await prepared
        if prep is None or self._latest.get(req.uri) is not ticket:
            return self._null("no prompt" if prep is None else "superseded")
        self.stats.newest = "warm-up"
        if prep.quick is not None and not req.invoked and not self._warmups.ready(req.uri):
            prep = dataclasses.replace(prep, ids=prep.quick, context_files=0)
            self.stats.quick += 1
            await self._warmups.finished(req.uri, "quick")
        else:
            await self._warmups.finished(req.uri)
        await self._warmups.finished(req.uri, "typed")  # a few tokens: those of its line
        if self._latest.get(req.uri) is not ticket:
            return self._null("superseded")
        prepared_at = time.perf_counter()
        flight = self.flights.launch(
            req.uri, Snapshot.at(req.text, req.offset), not req.invoked,
            lambda flight: self._generate(req, prep, backend, options, flight),
            lambda flight, found: self._store(req, flight, found, flight.spent))
        if not req.invoked and prep.site.multiline and self.debounce is not None:
            flight.part = lambda: self._store_part(req, flight, prep.site, options)
        self.stats.newest, self.stats.newest_tokens = "generating", 0
        part = await self._wait(flight, req, started)
        if (part is None and flight.task.cancelled()) or self._latest.get(req.uri) is not ticket:
            # a newer keystroke cancelled it or waits on it, or its text left what was typed
            return self._null("superseded" if self._latest.get(req.uri) is not ticket else "cancelled")
        done = time.perf_counter()
        self.stats.last_timings_ms = {"debounce": round(1000 * (waited - started)),
                                      "prepare_wait": round(1000 * (prepared_at - waited)),
                                      "generate": round(1000 * (done - prepared_at))}
        if part is not None:  # the lines written so far (step 7): the generation runs on
            self.stats.early += 1
            first = round(1000 * ((flight.first_at or done) - prepared_at))
            self.stats.last_engine = {"prompt_tokens": len(prep.ids), "tokens": flight.answered, "ttft_ms": first,
                                      "early": True}
            suggestions = [Suggestion(text, replace) for text, replace in part]
        else:
            suggestions = flight.task.result()
        if not suggestions:
            self.stats.empty += 1
            return self._null("empty")
        if part is None:
            self._showed(flight, flight.spent)
        self.stats.newest = "answered"
        return Completions(suggestions, False, len(prep.ids), prep.context_files)

    async def _wait(self, flight: Flight, req: CompletionRequest, started: float) -> list[tuple[str, int]] | None:
        """Wait for `flight` to end (None). An automatic request waits at most
        `answer_by()` after its key for a generation that may be shown in part (step 7):
        past that, once the lines written so far make a suggestion for the request's place,
        it answers with them (their items, from the cache)."""
        if flight.part is None or req.invoked or self.debounce is None:
            await flight.wait()
            return None
        if await flight.wait(until=started + self.debounce.answer_by()):
            return None
        while True:
            if flight.part():
                found = self.cache.lookup(req.uri, req.text, req.offset)
                if found is not None:
                    return found
            if await flight.wait(line=True):
                return None

    def _store_part(self, req: CompletionRequest, flight: Flight, site: Site, options: CompletionOptions) -> bool:
        """Put what may be shown of `flight` so far (its complete lines) in the cache, in place
        of an earlier part; whether there was any."""
        suggestion = answered_part(flight.raw, site, options.max_lines)
        if suggestion is None or self._secret(req, suggestion):
            return False
        flight.answered = flight.tokens
        self._store(req, flight, [suggestion], flight.tokens)
        return True

    def _store(self, req: CompletionRequest, flight: Flight, found: list[Suggestion], tokens: int) -> None:
        """Cache `found`, made of the first `tokens` tokens of `flight`, for the request's place."""
        self.cache.store(req.uri, req.text, req.offset, [(s.text, s.replace) for s in found],
                         alternatives=req.invoked, on_hit=lambda: self._showed(flight, tokens))

    def _showed(self, flight: Flight, tokens: int) -> None:
        """An answer showed the first `tokens` tokens of `flight`."""
        new = self.flights.shown(flight, tokens)
        self.stats.shown_tokens += new
        self.stats.last_answer_tokens = new

    def _null(self, why: str) -> None:  # null, not an error: the client just shows nothing
        """Answer nothing, remembering why (status: `last_null`): "superseded" (a newer
        keystroke), "cancelled" (the generation left the typed text), "empty" (nothing left
        to show after post-processing), "no prompt", "no model"."""
        if why != "superseded":  # a superseded request is not the newest one
            self.stats.last_null, self.stats.newest = why, "null"
        return None

    def _warm_up(self, uri: str, prepared: asyncio.Future) -> None:
        if not prepared.cancelled() and prepared.exception() is None and prepared.result() is not None:
            prep = prepared.result()
            prefixes = {"full": prep.ids[:prep.stable]}
            if prep.quick is not None:
                prefixes["quick"] = prep.quick[:prep.quick_stable]
            starts = {"full": prep.line, "quick": prep.quick_line}
            self._warmups.start(uri, prefixes, {kind: s for kind, s in starts.items() if s is not None})

    def _warm_typed(self, req: CompletionRequest, ticket: object, backend: Backend) -> None:
        """Warm the prompt up to the cursor after a keystroke on a warm line (`WarmUps.typed`);
        its tokens are made on the prepare thread."""
        start = self._warmups.line_start(req.uri) if backend.info.prefill_only else None
        if start is None:  # a remote server would generate a token for each keystroke
            return
        made = asyncio.get_running_loop().run_in_executor(self.thread, start.prompt, req.text, req.offset,
                                                          backend.tokenizer, req.path)

        def warm(done: asyncio.Future) -> None:
            ids = None if done.cancelled() or done.exception() is not None else done.result()
            if ids is not None and self._latest.get(req.uri) is ticket:  # a newer keystroke warms its own
                self._warmups.typed(req.uri, ids)
                self.stats.typed_warmups += 1
        made.add_done_callback(warm)

    def forget(self, uri: str) -> None:
        """The document closed: nothing of it stays behind."""
        self.cache.forget(uri)
        self._prompts.forget(uri)
        self.flights.forget(uri)
        self._latest.pop(uri, None)
        self._clock.forget(uri)
        self._warmups.forget(uri)
        if self.debounce is not None:
            self.debounce.forget(uri)

    def tracked(self) -> dict[str, int]:
        """Sizes of the per-document state (bounded by the open documents, whatever the traffic)."""
        return {"latest": len(self._latest), "lines": len(self._clock), "running": len(self.flights),
                "warming": len(self._warmups), "cached_documents": len(self.cache),
                "debounced_documents": len(self.debounce) if self.debounce is not None else 0,
                **self._prompts.tracked()}

    # -- prompt (prepare thread) ---------------------------------------------------------------

    def _prepare(self, req: CompletionRequest, ticket: object, backend: Backend,
                 options: CompletionOptions) -> Prepared | None:
        if self._latest.get(req.uri) is not ticket:
            return None  # superseded while queued: skip the work
        began = time.perf_counter()
        self.stats.prompts += 1
        prepared = self._prompts.build(req, backend, options)
        if prepared is not None:
            self._clock.built(time.perf_counter() - began)
        return prepared

    # -- generation and post-processing ---------------------------------------------------------

    async def _generate(self, req: CompletionRequest, prep: Prepared, backend: Backend,
                        options: CompletionOptions, flight: Flight) -> list[Suggestion]:
        count = options.candidates if req.invoked else 1
        jobs = [self._one(req, prep, backend, options, i, flight) for i in range(count)]
        results = await asyncio.gather(*jobs)
        suggestions: list[Suggestion] = []
        for suggestion in results:
            if suggestion is not None and all(s.text != suggestion.text for s in suggestions):
                suggestions.append(suggestion)
        return suggestions

    async def _one(self, req: CompletionRequest, prep: Prepared, backend: Backend, options: CompletionOptions,
                   index: int, flight: Flight) -> Suggestion | None:
        tokenizer = backend.tokenizer
        sampled = index > 0
        params = SamplingParams(
            max_tokens=token_limit(prep.site, req.invoked, options.max_tokens),
            temperature=max(options.temperature, SAMPLED_TEMPERATURE) if sampled else options.temperature,
            top_p=0.95 if sampled else 1.0,
            seed=index if sampled else None,
            min_tokens=1,
            stop=() if prep.site.multiline else ("\n",),
            stop_token_ids=tuple(sorted(tokenizer.special.all_ids)),
            best_of=options.line_best_of if not (sampled or prep.site.multiline or options.temperature) else 1,
        )

        written: list[int] = []  # a line break the model ended the cursor's line with (see below)

        def enough(ids: list[int]) -> bool:
            raw = tokenizer.decode(written + ids)
            if index == 0:
                if self.flights.current(req.uri, flight):
                    self.stats.newest_tokens = len(written) + len(ids)
                flight.wrote(raw if prep.site.multiline else single_line(raw, prep.site), len(written) + len(ids))
            return is_final(raw, prep.site, options.max_lines)

        async def generate(ids: list[int]):
            out = await self.models.generate(ids, params, Priority.INLINE, supersede=f"inline:{req.uri}#{index}",
                                             enough=enough, wasted=self.flights.booker(flight, index),
                                             started=flight.streams.append)
            flight.spent += len(out.token_ids)
            return out

        try:
            out = await generate(prep.ids)
            if not prep.site.multiline and out.finish_reason == "stop" and next_line(tokenizer.decode(out.token_ids),
                                                                                    prep.site):
                # The line is complete: the model ended it at once (the engine stopped at the
                # break). Its next line is the suggestion, from the same prompt and the break
                # (both in the prefix cache now: a token or two to compute).
                written = list(out.token_ids)
                out = await generate(prep.ids + written)
                out = dataclasses.replace(out, token_ids=written + list(out.token_ids))
                self.models.stats.last_generated_tokens = len(out.token_ids)  # the suggestion's, both requests
        except (ModelUnavailable, ValueError) as exc:  # ValueError: the engine cannot admit the prompt
            log.warning("completion not generated: %s", exc)
            return None
        if out.finish_reason not in ("stop", "length"):
            return None
        if index == 0 and flight.answered is None:  # an answer made of its first lines has its own figures
            m = out.metrics
            if self.debounce is not None and m.get("time_to_first_token_s"):
                self.debounce.first_token(m["time_to_first_token_s"])
            self.stats.last_engine = {"prompt_tokens": len(prep.ids), "cached_tokens": m.get("cached_tokens"),
                                      "ttft_ms": round(1000 * m.get("time_to_first_token_s", 0.0)),
                                      "decode_ms": round(1000 * m.get("decode_s", 0.0)), "tokens": len(out.token_ids)}
        suggestion = self._finish(tokenizer.decode(out.token_ids), out.finish_reason, prep.site, options)
        if (suggestion is None and not sampled and not params.temperature and flight.answered is None
                and prep.site.line_check is not None and backend.info.backend == "native"):
            flight.wrote("", flight.tokens)  # nothing of the rejected text to agree with: a keystroke starts anew
            try:
                suggestion = await self._next_best(prep, tokenizer, params, options, flight, list(out.token_ids))
            except (ModelUnavailable, ValueError) as exc:
                log.warning("no alternative to a rejected completion: %s", exc)
        if suggestion is None:
            return None
        return None if self._secret(req, suggestion) else suggestion

    def _finish(self, raw: str, finish_reason: str, site: Site, options: CompletionOptions,
                alternative: bool = False) -> Suggestion | None:
        """What post-processing makes of the model's text `raw` at `site` (a text it dropped is
        booked in the waste ledger). An `alternative` (`next_best.py`) must be one the line
        check can judge: not cut by the token limit before a line ended (a line that never
        ends is a loop more often than not), and it is not booked."""
        # a line cut by the token limit is unfinished: whether it parses says nothing yet; one
        # a filter cut as it was written (`cut_short`: a loop) is what is shown, and checked
        checked = finish_reason == "stop"
        if not site.multiline:
            raw = single_line(raw, site)
        elif finish_reason == "length":
            whole = complete_lines(raw)  # no half-written last line: what is left can be checked
            checked, raw = whole != raw, whole
        if alternative and not checked:
            return None
        checking = site if checked else dataclasses.replace(site, line_check=None)
        suggestion = finish(raw, checking, options.max_lines)
        if suggestion is None and not alternative:
            self.waste.dropped(raw, checking, options.max_lines)
        return suggestion

    async def _next_best(self, prep: Prepared, tokenizer, params: SamplingParams, options: CompletionOptions,
                         flight: Flight, rejected: list[int]) -> Suggestion | None:
        """The greedy text of the tokens `rejected` left nothing to show: the most likely
        alternative to its first token whose text post-processing keeps (`next_best.py`), or
        None. At the end of a line of code, an alternative may end the line (a line break and
        indentation: the next line's text follows), as the greedy text may. The tokens of what
        is not shown are booked as `rejected` waste when an alternative is shown, else as the
        generation's (`empty`)."""
        site = prep.site

        async def run(ids: list[int], p: SamplingParams) -> RequestOutput:
            head = ids[len(prep.ids):]  # the alternative's first token
            return await self.models.generate(
                ids, p, Priority.INLINE, wasted=self.flights.booker(flight, 1), started=flight.streams.append,
                enough=lambda new: is_final(tokenizer.decode(head + new), site, options.max_lines))

        def allowed(token: int) -> bool:
            text = tokenizer.decode([token])
            if token in tokenizer.special.all_ids:
                return False
            return not any(stop in text for stop in params.stop) or (next_line(text, site) and not text[1:].strip(" \t"))

        found, probed = await next_best.alternatives(run, prep.ids, params, rejected[0] if rejected else None, allowed)
        spent = probed + sum(len(out.token_ids) for _, out in found)  # the probe's token stands for the first ones
        for token, out in found:
            if out.finish_reason not in ("stop", "length"):
                continue
            ids = [token, *out.token_ids]
            suggestion = self._finish(tokenizer.decode(ids), out.finish_reason, site, options, alternative=True)
            if suggestion is not None:
                self.stats.next_best += 1
                self.stats.last_replaced = tokenizer.decode(rejected)
                self.waste.rejected(len(rejected) + spent - len(ids))
                flight.spent += len(ids) - len(rejected)
                self.models.stats.last_generated_tokens = len(ids)
                return suggestion
        flight.spent += spent
        return None

    def _secret(self, req: CompletionRequest, suggestion: Suggestion) -> bool:
        """Whether `suggestion` would put a secret-looking string into the document (it is
        dropped and logged)."""
        secret = inserted_secret(req.text, req.offset, req.offset + suggestion.replace, suggestion.text, req.path)
        if secret is not None:
            self.stats.secrets_dropped += 1
            log.warning("%s: dropped a suggestion that writes a secret-looking string (%s)", req.uri, secret.rule)
        return secret is not None


def _retrieve(future: asyncio.Future) -> None:
    """A prepare result nobody waits for (its request was superseded): still collect its
    exception, so that it is logged once and not reported as never retrieved."""
    if not future.cancelled() and future.exception() is not None:
        log.error("preparing a completion failed", exc_info=future.exception())

