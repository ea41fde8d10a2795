"""The `openai` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server,
`loopls serve`) over HTTP.

Prompts are tokenized here with the model's own tokenizer (loaded from a local checkpoint
folder or hub cache) and sent as token ids, which vLLM and `loopls serve` accept as the
`prompt` of /v1/completions; FIM prompts are therefore built client-side for every server.
Every request streams (SSE) so that cancelling it closes the HTTP request, which is how an
OpenAI-compatible server learns to abort the generation and free its KV cache.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import httpx

from ..model.sampling_params import SamplingParams
from ..serving.priority import Priority
from ..serving.request_frontend import RequestStream
from ..serving.request_output import RequestOutput
from .base import BackendConfig, BackendError, BackendInfo, checked_prompt
from .checkpoint_info import read_checkpoint_info
from .sse import SseError, read_completion_events

log = logging.getLogger("loopls.engine")

# Used when neither the options, the server nor the checkpoint say how long a context may be.
_FALLBACK_CONTEXT = 4096
_BACKOFF_S = 0.25  # first retry delay; doubles per attempt
_RETRY_STATUS = (502, 503, 504)  # a proxy or server that is (re)starting


class OpenAIBackend:
    def __init__(self, config: BackendConfig, model: str, tokenizer, context_limit: int, info: BackendInfo) -> None:
        self.config = config
        self.model = model  # the name the server knows the model by
        self.tokenizer = tokenizer
        self.context_limit = context_limit
        self.info = info
        self.base_url = config.url.rstrip("/")
        # None: not yet contacted; False after a connection failure, until a request succeeds.
        self.reachable: bool | None = None
        self.limit_known = False  # context_limit came from the options or the server
        self._ids = itertools.count()
        self._live: dict[str, tuple[RequestStream, asyncio.Task]] = {}
        self._cancelling: set[str] = set()  # request ids cancelled once (see cancel)
        self._keys: dict[str, str] = {}  # supersede key -> live request id
        self._client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self._counts = {"requests": 0, "failed": 0, "cancelled": 0, "connection_errors": 0, "generated_tokens": 0}

    # -- the Backend interface -------------------------------------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        priority: Priority = Priority.INLINE,
        supersede: str | None = None,
    ) -> RequestStream:
        prompt_ids = checked_prompt(prompt_ids, params.max_tokens, self.context_limit)
        loop = asyncio.get_running_loop()
        request_id = f"loopls-{next(self._ids)}"
        stream = RequestStream(request_id, self, loop)
        # Priority is not part of the OpenAI protocol (vLLM rejects it unless its scheduler runs
        # by priority); the server serves requests in arrival order.
        task = loop.create_task(self._generate(stream, self._body(prompt_ids, params), len(prompt_ids)))
        self._live[request_id] = (stream, task)
        task.add_done_callback(lambda _: self._forget(stream, task, len(prompt_ids)))
        if supersede:
            previous = self._keys.get(supersede)
            self._keys[supersede] = request_id
            if previous is not None:
                self.cancel(previous)
        return stream

    def cancel(self, request_id: str) -> None:
        """Cancel a live request: its HTTP stream is closed, so the server aborts it.

        Once only: a second cancel would land inside that close (the task is awaiting it) and
        interrupt it, leaving the connection open and the server generating on."""
        entry = self._live.get(request_id)
        if entry is not None and request_id not in self._cancelling:
            self._cancelling.add(request_id)
            entry[1].cancel()

    def stats(self) -> dict[str, Any]:
        return dict(self._counts, running=len(self._live), reachable=self.reachable)

    def shutdown(self) -> None:
        for request_id in list(self._live):
            self.cancel(request_id)
        if self._client is not None:
            loop, client = self._client
            self._client = None
            if not loop.is_closed():
                # Close the pooled connections on their own loop, after the cancelled streams.
                loop.call_soon_threadsafe(lambda: loop.create_task(client.aclose()))

    # -- one request -------------------------------------------------------------------------
    def _body(self, prompt_ids: list[int], p: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt_ids,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "stream": True,
            # vLLM and loopls serve extensions; other servers ignore what they do not know.
            "return_token_ids": True,
            "min_tokens": p.min_tokens,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if p.stop_token_ids:
            body["stop_token_ids"] = list(p.stop_token_ids)
        if p.top_k:
            body["top_k"] = p.top_k
        if p.seed is not None:
            body["seed"] = p.seed
        return body

    async def _generate(self, stream: RequestStream, body: dict[str, Any], prompt_tokens: int) -> None:
        started = time.perf_counter()
        first: float | None = None
        tokens: list[int] = []
        reason: str | None = None
        error = None
        self._counts["requests"] += 1
        try:
            async for new, finish in self._events(body):
                if new:
                    first = first or time.perf_counter()
                    tokens.extend(new)
                    stream._deliver(new, None)
                reason = finish or reason
            # Some servers end the stream without a finish reason.
            reason = reason or ("length" if len(tokens) >= body["max_tokens"] else "stop")
            if reason == "error":
                error = f"the model server at {self.base_url} ended the request with an error"
        except asyncio.CancelledError:
            # Our own cancel(): leaving the `async with` in _events closed the HTTP request.
            reason = "cancelled"
            self._counts["cancelled"] += 1
        except BackendError as exc:
            reason, error = "error", str(exc)
            self._counts["failed"] += 1
        self._counts["generated_tokens"] += len(tokens)
        now = time.perf_counter()
        metrics = {"time_to_first_token_s": None if first is None else first - started, "total_s": now - started}
        stream._deliver([], RequestOutput(stream.request_id, prompt_tokens, tokens, reason, error, metrics))

    async def _events(self, body: dict[str, Any]):
        """(new token ids, finish reason or None) per streamed chunk; BackendError on failure."""
        client = self._http()
        url = f"{self.base_url}/completions"
        # Known to be down: try once (the user is typing); otherwise retry with backoff.
        attempts = 1 if self.reachable is False else self.config.retries
        for attempt in range(attempts):
            try:
                async with client.stream("POST", url, json=body) as response:
                    if response.status_code in _RETRY_STATUS and attempt + 1 < attempts:
                        await asyncio.sleep(_BACKOFF_S * 2**attempt)
                        continue
                    await self._check_status(response)
                    self._mark_reachable()
                    async for event in read_completion_events(response, self.tokenizer):
                        yield event
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self._counts["connection_errors"] += 1
                if attempt + 1 < attempts:
                    await asyncio.sleep(_BACKOFF_S * 2**attempt)
                    continue
                self.reachable = False
                raise BackendError(f"cannot reach the model server at {self.base_url}: {_reason(exc)}") from None
            except httpx.ReadTimeout:
                raise BackendError(
                    f"the model server at {self.base_url} sent nothing for {self.config.timeout_s:g} s"
                ) from None
            except (httpx.HTTPError, SseError) as exc:
                raise BackendError(f"the model server at {self.base_url} failed: {_reason(exc)}") from None

    async def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        await response.aread()
        try:
            detail = response.json()
            message = (detail.get("error") or {}).get("message") if isinstance(detail.get("error"), dict) else None
            message = message or detail.get("message") or detail.get("detail") or response.text
        except ValueError:
            message = response.text
        raise BackendError(f"the model server at {self.base_url} answered {response.status_code}: {str(message)[:300]}")

    def _mark_reachable(self) -> None:
        if self.reachable is False:
            log.info("model server at %s is reachable again", self.base_url)
        self.reachable = True
        if not self.limit_known:
            self.limit_known = True
            asyncio.get_running_loop().create_task(self._refresh_limit())

    async def _refresh_limit(self) -> None:
        """The server's max_model_len, for a backend loaded while the server was down."""
        try:
            response = await self._http().get(f"{self.base_url}/models")
            entry = next((m for m in response.json()["data"] if m.get("id") == self.model), {})
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return
        if isinstance(entry.get("max_model_len"), int):
            self.context_limit = entry["max_model_len"]

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (an httpx client cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:
            headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
            timeout = httpx.Timeout(self.config.timeout_s, connect=min(self.config.timeout_s, 10.0))
            self._client = (loop, httpx.AsyncClient(timeout=timeout, headers=headers))
        return self._client[1]

    def _forget(self, stream: RequestStream, task: asyncio.Task, prompt_tokens: int) -> None:
        self._live.pop(stream.request_id, None)
        self._cancelling.discard(stream.request_id)
        for key, rid in list(self._keys.items()):
            if rid == stream.request_id:
                del self._keys[key]
        if task.cancelled():  # cancelled before it started (superseded at once): it never answered
            self._counts["cancelled"] += 1
            stream._deliver([], RequestOutput(stream.request_id, prompt_tokens, [], "cancelled"))


class ServerUnreachable(BackendError):
    """No answer at all (connection refused, timeout), as opposed to an answer refusing us."""


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def list_models(url: str, api_key: str | None, timeout_s: float) -> list[dict[str, Any]]:
    """GET {url}/models: the served models (vLLM adds `max_model_len`); BackendError if unreachable."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
    except httpx.InvalidURL as exc:  # not an HTTPError: a malformed URL, not an unreachable server
        raise BackendError(f"{url} is not a valid URL: {exc}") from None
    except httpx.HTTPError as exc:
        raise ServerUnreachable(f"cannot reach the model server at {url}: {_reason(exc)}") from None
    if response.status_code != 200:
        raise BackendError(f"{url}/models answered {response.status_code}: {response.text[:200]}")
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise BackendError(f"{url}/models did not answer with an OpenAI model list") from None
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def load_openai(config: BackendConfig) -> OpenAIBackend:
    """Connect to the server at `config.url`; the tokenizer must be available locally.

    An unreachable server is not an error here: requests fail with a clear message until it
    answers, and then work (the context limit comes from the options or the checkpoint).
    """
    if not config.url or not config.url.startswith(("http://", "https://")):
        raise BackendError(f"the openai backend needs model.url, an http(s) URL such as http://127.0.0.1:8000/v1 (got {config.url!r})")
    try:
        models = list_models(config.url, config.api_key, min(config.timeout_s, 5.0))
    except ServerUnreachable as exc:  # down for now; a server that answers "no" is an error
        log.warning("%s; requests will fail until it answers", exc)
        models = None
    served = {m["id"]: m for m in models or []}
    model = config.model or next(iter(served), None)
    if model is None:
        raise BackendError(f"set model.name: the server at {config.url} cannot be asked which model it serves")
    if models is not None and model not in served:
        raise BackendError(f"the server at {config.url} serves {sorted(served)}, not {model!r}; set model.name to one of them")
    source = config.tokenizer or model
    try:
        ckpt = read_checkpoint_info(source)
    except BackendError as exc:
        raise BackendError(
            f"the openai backend tokenizes locally and cannot load the tokenizer of {source!r}: {exc} "
            "(set model.tokenizer to a checkpoint folder or a cached hub id)"
        ) from None
    server_limit = (served.get(model) or {}).get("max_model_len")
    limit = config.context_limit or (server_limit if isinstance(server_limit, int) else None) or ckpt.max_positions
    if limit is None:
        log.warning("context limit unknown; assuming %d tokens (set model.contextLimit)", _FALLBACK_CONTEXT)
    info = BackendInfo(
        backend="openai", model=model, path=config.url, model_type=ckpt.model_type, device="remote",
        untrained=ckpt.untrained,
    )
    backend = OpenAIBackend(config, model, ckpt.tokenizer, limit or _FALLBACK_CONTEXT, info)
    backend.reachable = models is not None
    # Ask the server for its limit once it answers, unless the options fixed one.
    backend.limit_known = config.context_limit is not None or isinstance(server_limit, int)
    return backend
