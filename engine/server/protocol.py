"""OpenAI request bodies -> engine requests, and engine results -> OpenAI response bodies.

Only what the engine can honour is accepted; anything else is refused with a message that
names the field (`RequestError`, answered as HTTP 400), never silently ignored when it would
change the output.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..model.sampling_params import SamplingParams
from ..model.tokenizer import Tokenizer
from .chat import ChatError, ChatTemplate

# OpenAI's defaults for /v1/completions and /v1/chat/completions.
_DEFAULT_MAX_TOKENS = {"completion": 16, "chat": 256}


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class EngineRequest:
    kind: str  # "completion" | "chat"
    prompt_ids: list[int]
    params: SamplingParams
    stream: bool
    return_token_ids: bool
    include_usage: bool  # stream_options.include_usage


def parse_request(kind: str, body: Any, tokenizer: Tokenizer, served_name: str, chat: ChatTemplate) -> EngineRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served_name:
        raise RequestError(f"model {model!r} is not served here (this server serves {served_name!r})", 404, "model_not_found")
    _refuse_unsupported(body, kind)
    if kind == "chat":
        try:
            text = chat.render(body.get("messages"))
        except ChatError as exc:
            raise RequestError(str(exc)) from None
        prompt_ids = encode_with_special(text, tokenizer)
    else:
        prompt_ids = _prompt_ids(body.get("prompt"), tokenizer)
    if not prompt_ids:
        raise RequestError("the prompt is empty")
    stream_options = _typed(body, "stream_options", dict, {})
    return EngineRequest(
        kind=kind,
        prompt_ids=prompt_ids,
        params=_sampling(body, kind),
        stream=_typed(body, "stream", bool, False),
        return_token_ids=_typed(body, "return_token_ids", bool, False),
        include_usage=bool(stream_options.get("include_usage", False)),
    )


def _refuse_unsupported(body: dict[str, Any], kind: str) -> None:
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError("only n=1 is supported")
    if body.get("suffix") is not None:
        raise RequestError("suffix is not supported: build the fill-in-the-middle prompt with the model's FIM tokens")
    if body.get("echo"):
        raise RequestError("echo is not supported")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise RequestError("logprobs are not supported")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise RequestError(f"{name} is not supported")
    if kind == "chat" and body.get("tools"):
        raise RequestError("tools are not supported")


def _typed(body: dict[str, Any], name: str, type_: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    # bool is an int in Python; a JSON true is not a number here.
    if not isinstance(value, type_) or (isinstance(value, bool) and bool not in _as_tuple(type_)):
        raise RequestError(f"{name} must be {_describe(type_)}, not {type(value).__name__}")
    return value


def _as_tuple(type_: type | tuple[type, ...]) -> tuple[type, ...]:
    return type_ if isinstance(type_, tuple) else (type_,)


def _describe(type_: type | tuple[type, ...]) -> str:
    return " or ".join({"int": "an integer", "float": "a number", "bool": "a boolean", "str": "a string",
                        "list": "a list", "dict": "an object"}.get(t.__name__, t.__name__) for t in _as_tuple(type_))


def _prompt_ids(prompt: Any, tokenizer: Tokenizer) -> list[int]:
    """A string, a list of token ids, or a one-element batch of either."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tokenizer.encode(prompt)
    if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        raise RequestError("one prompt per request: batches of prompts are not supported")
    raise RequestError("prompt must be a string or a list of token ids")


def _sampling(body: dict[str, Any], kind: str) -> SamplingParams:
    max_tokens = _typed(body, "max_completion_tokens", int, None) if kind == "chat" else None
    max_tokens = max_tokens or _typed(body, "max_tokens", int, _DEFAULT_MAX_TOKENS[kind])
    stop = _typed(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    stop_ids = _typed(body, "stop_token_ids", list, [])
    if not all(isinstance(s, str) for s in stop):
        raise RequestError("stop must be a string or a list of strings")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in stop_ids):
        raise RequestError("stop_token_ids must be a list of integers")
    top_k = _typed(body, "top_k", int, 0)
    seed = _typed(body, "seed", int, None)
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=float(_typed(body, "temperature", (int, float), 1.0)),
            top_k=max(top_k, 0),  # vLLM spells "disabled" as -1
            top_p=float(_typed(body, "top_p", (int, float), 1.0)),
            seed=seed,
            min_tokens=_typed(body, "min_tokens", int, 0),
            stop=tuple(stop),
            stop_token_ids=tuple(stop_ids),
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def encode_with_special(text: str, tokenizer: Tokenizer) -> list[int]:
    """Token ids of `text` in which special-token spellings (`<|im_start|>`) become their
    ids, as a chat template means them; plain `encode` may split them into pieces."""
    specials = {tokenizer.decode([tid], skip_special=False): tid for tid in tokenizer.special.all_ids}
    specials = {s: tid for s, tid in specials.items() if s}
    ids: list[int] = []
    start = 0
    while start < len(text):
        hits = [(text.find(s, start), s) for s in specials]
        at, spelling = min(((i, s) for i, s in hits if i >= 0), default=(-1, ""), key=lambda h: (h[0], -len(h[1])))
        if at < 0:
            ids += tokenizer.encode(text[start:])
            break
        ids += tokenizer.encode(text[start:at]) + [specials[spelling]]
        start = at + len(spelling)
    return ids


# -- responses -------------------------------------------------------------------------------
def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def response_body(req: EngineRequest, rid: str, model: str, text: str, token_ids: list[int], finish: str) -> dict[str, Any]:
    """The whole (non-streamed) answer."""
    if req.kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    if req.return_token_ids:
        choice["token_ids"] = token_ids
        choice["prompt_token_ids"] = req.prompt_ids
    return {
        "id": rid,
        "object": "chat.completion" if req.kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(len(req.prompt_ids), len(token_ids)),
    }


def chunk_body(req: EngineRequest, rid: str, model: str, text: str, token_ids: list[int],
               finish: str | None, first: bool = False) -> dict[str, Any]:
    """One streamed event."""
    if req.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    if req.return_token_ids:
        choice["token_ids"] = token_ids
        if first:
            choice["prompt_token_ids"] = req.prompt_ids
    return {
        "id": rid,
        "object": "chat.completion.chunk" if req.kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def error_body(message: str, status: int, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}
