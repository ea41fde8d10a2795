"""The ASGI app of `loopls serve`: OpenAI-compatible endpoints over one engine backend.

- POST /v1/completions, /v1/chat/completions (JSON, or SSE with "stream": true)
- GET /v1/models, /health, /metrics (Prometheus)

Limits answer with an OpenAI-style error body: 401 without the bearer key (when one is set),
413 for an over-size body, 400 for a bad request or a prompt over the token limit, 429 when
`max_concurrent` requests are already generating. A client that disconnects cancels its
request: the engine frees its KV blocks before its next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..backends.base import Backend, RequestOutput, Stream
from ..model.generate import TextStream
from ..serving.request_frontend import EngineError
from .chat import ChatTemplate
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import EngineRequest, RequestError, chunk_body, error_body, new_id, parse_request, response_body, usage


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    max_body_bytes: int = 4 << 20  # a 128K-token prompt as a JSON list of ids is under 1 MiB
    max_prompt_tokens: int | None = None  # None: the model's context limit less one
    max_concurrent: int = 64  # requests generating at once; more get 429

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024 or self.max_concurrent < 1:
            raise ValueError("max_body_bytes must be at least 1024 and max_concurrent at least 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be at least 1")


class EngineServer:
    """Request handling; one per app, holding the backend and the counters."""

    def __init__(self, backend: Backend, served_name: str, api_key: str | None, limits: ServerLimits) -> None:
        self.backend = backend
        self.served_name = served_name
        self.api_key = api_key
        self.limits = limits
        self.chat = ChatTemplate(backend.tokenizer)
        self.metrics = ServerMetrics(backend.stats)
        self.in_flight = 0
        self.created = int(time.time())

    # -- endpoints -------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.served_name})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except RequestError as exc:
            return _error(exc)
        info = self.backend.info
        return JSONResponse({"object": "list", "data": [{
            "id": self.served_name, "object": "model", "created": self.created, "owned_by": "loopls",
            "root": info.path, "max_model_len": self.backend.context_limit,
        }]})

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion")

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    # -- one generation request --------------------------------------------------------------
    async def _generate(self, request: Request, kind: str) -> Response:
        endpoint = request.url.path
        try:
            self._authorize(request)
            if self.in_flight >= self.limits.max_concurrent:
                raise RequestError(f"too many concurrent requests (limit {self.limits.max_concurrent}); retry later",
                                   429, "rate_limit_exceeded")
            req = self._parse(kind, await self._read_body(request))
            stream = self.backend.submit(req.prompt_ids, req.params)
        except RequestError as exc:
            self.metrics.finished(endpoint, "rejected", None)
            return _error(exc)
        except ValueError as exc:  # the engine's admission check (prompt + max_tokens too long)
            self.metrics.finished(endpoint, "rejected", None)
            return _error(RequestError(str(exc)))
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        rid = new_id(kind)
        if req.stream:
            progress = _Progress()
            return _SseResponse(self._events(req, stream, rid, progress),
                                lambda: self._stream_closed(stream, endpoint, progress))
        try:
            out = await _until_done_or_gone(request, stream)
        finally:
            self._done()
        self.metrics.finished(endpoint, out.finish_reason, out)
        if out.finish_reason == "error":
            return _error(RequestError(f"generation failed: {out.error}", 500, "server_error"))
        text = self._text(req, out.token_ids)
        return JSONResponse(response_body(req, rid, self.served_name, text, out.token_ids, out.finish_reason))

    async def _events(self, req: EngineRequest, stream: Stream, rid: str, progress: _Progress) -> AsyncIterator[str]:
        """SSE events of one request; `progress.out` is its output once it has ended."""
        pieces: list[str] = []
        text = TextStream(self.backend.tokenizer, req.prompt_ids[-1], req.params.stop, pieces.append)
        first = True
        if req.kind == "chat":  # the first chat chunk announces the role
            yield _sse(chunk_body(req, rid, self.served_name, "", [], None, first=True))
            first = False
        try:
            async for token in stream:
                text.update(token)  # past a stop string nothing more is emitted (the engine ends too)
                if pieces or req.return_token_ids:
                    yield _sse(chunk_body(req, rid, self.served_name, "".join(pieces), [token], None, first))
                    pieces.clear()
                    first = False
        except EngineError as exc:
            progress.out = await stream.result()
            yield _sse(error_body(f"generation failed: {exc}", 500, "server_error"))
        else:
            progress.out = out = await stream.result()
            text.finish()
            yield _sse(chunk_body(req, rid, self.served_name, "".join(pieces), [], out.finish_reason, first))
            if req.include_usage:
                yield _sse({"id": rid, "object": "text_completion", "model": self.served_name, "choices": [],
                            "usage": usage(len(req.prompt_ids), len(out.token_ids))})
        yield "data: [DONE]\n\n"

    def _stream_closed(self, stream: Stream, endpoint: str, progress: _Progress) -> None:
        """However the response ended (finished, client gone, never started), the request ends
        and is counted once."""
        if progress.out is None:
            stream.cancel()  # the client went away: free the request's KV blocks now
        self._done()
        self.metrics.finished(endpoint, progress.out.finish_reason if progress.out else "cancelled", progress.out)

    # -- helpers ---------------------------------------------------------------------------
    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise RequestError("missing or wrong API key: send Authorization: Bearer <key>", 401, "authentication_error")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body of {declared} bytes exceeds the limit of {limit} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body exceeds the limit of {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, kind: str, raw: bytes) -> EngineRequest:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"the request body is not JSON: {exc}") from None
        req = parse_request(kind, body, self.backend.tokenizer, self.served_name, self.chat)
        limit = self.limits.max_prompt_tokens or self.backend.context_limit - 1
        if len(req.prompt_ids) > limit:
            raise RequestError(f"prompt of {len(req.prompt_ids)} tokens exceeds the limit of {limit} tokens")
        return req

    def _text(self, req: EngineRequest, token_ids: list[int]) -> str:
        pieces: list[str] = []
        text = TextStream(self.backend.tokenizer, req.prompt_ids[-1], req.params.stop, pieces.append)
        for token in token_ids:
            if text.update(token):
                break
        return text.text

    def _done(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)


@dataclass
class _Progress:
    out: RequestOutput | None = None  # set when the request has ended


class _SseResponse(StreamingResponse):
    """An event stream that calls `on_close` once the response is over, whatever ended it:
    the last event, a client that disconnected (Starlette then cancels the events
    generator), or a connection lost before the first event was sent."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _until_done_or_gone(request: Request, stream: Stream) -> RequestOutput:
    """The request's output; cancels it if the client disconnects first."""
    result = asyncio.ensure_future(stream.result())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not result.done():
            stream.cancel()
        return await result
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _error(exc: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else ({"Retry-After": "1"} if exc.status == 429 else None)
    return JSONResponse(error_body(str(exc), exc.status, exc.kind), status_code=exc.status, headers=headers)


def create_app(backend: Backend, served_name: str, *, api_key: str | None = None,
               limits: ServerLimits | None = None) -> Starlette:
    server = EngineServer(backend, served_name, api_key, limits or ServerLimits())
    app = Starlette(routes=[
        Route("/health", server.health, methods=["GET"]),
        Route("/metrics", server.prometheus, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
    ])
    app.state.server = server
    return app
