"""Chat messages -> prompt text with the model's own chat template (tokenizer_config.json).

Templates are Jinja run in a sandbox, as transformers runs them: a template is data from a
checkpoint and must not reach Python internals.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..model.tokenizer import Tokenizer

_ROLES = ("system", "user", "assistant", "tool", "developer")


class ChatError(ValueError):
    """Messages that cannot be rendered (bad shape, no template, a template error)."""


def _raise_exception(message: str) -> None:  # templates call this on bad input
    raise TemplateError(message)


class ChatTemplate:
    """The model's template, compiled once per server."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._template = None
        if tokenizer.chat_template is not None:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_exception
            try:
                self._template = env.from_string(tokenizer.chat_template)
            except TemplateError:
                self._template = None  # refused per request below, with the reason
        self._bos = _spelling(tokenizer, tokenizer.special.bos)
        self._eos = _spelling(tokenizer, _first(tokenizer.special.eos_ids))

    def render(self, messages: Any) -> str:
        if self._template is None:
            raise ChatError("this model has no usable chat template (tokenizer_config.json chat_template); use /v1/completions")
        try:
            return self._template.render(
                messages=_normalise(messages), add_generation_prompt=True, bos_token=self._bos, eos_token=self._eos,
            )
        except TemplateError as exc:
            raise ChatError(f"chat template failed: {exc}") from None


def _normalise(messages: Any) -> list[dict[str, str]]:
    """[{role, content}] with content as text (a list of text parts is joined)."""
    if not isinstance(messages, list) or not messages:
        raise ChatError("messages must be a non-empty list")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise ChatError(f"messages[{i}] needs a role among {', '.join(_ROLES)}")
        content = msg.get("content")
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise ChatError(f"messages[{i}].content: only text parts are supported")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ChatError(f"messages[{i}].content must be a string or a list of text parts")
        out.append({"role": msg["role"], "content": content})
    return out


def _first(ids: tuple[int, ...]) -> int | None:
    return ids[0] if ids else None


def _spelling(tokenizer: Tokenizer, tid: int | None) -> str:
    return "" if tid is None else tokenizer.decode([tid], skip_special=False)
