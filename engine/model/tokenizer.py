"""Tokenizers from a checkpoint folder: `tokenizer.json` (tokenizers) or `tokenizer.model`
(SentencePiece), with special, FIM and EOS tokens read from the checkpoint's configs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Spellings used by the common code-model families; the ids always come from the checkpoint.
_FIM_SPELLINGS = {
    "fim_prefix": ("<|fim_prefix|>", "<fim_prefix>", "<PRE>", "<｜fim▁begin｜>"),
    "fim_suffix": ("<|fim_suffix|>", "<fim_suffix>", "<SUF>", "<｜fim▁hole｜>"),
    "fim_middle": ("<|fim_middle|>", "<fim_middle>", "<MID>", "<｜fim▁end｜>"),
    "fim_pad": ("<|fim_pad|>", "<fim_pad>"),
    "file_sep": ("<|file_sep|>", "<file_sep>"),
    "repo_name": ("<|repo_name|>", "<reponame>"),
}


FIM_LAYOUTS = ("psm", "spm")  # the layouts loopls's packer writes (loopls.context.prompt)


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded from a checkpoint folder."""


@dataclass(frozen=True)
class SpecialTokens:
    bos: int | None = None
    eos_ids: tuple[int, ...] = ()
    fim_prefix: int | None = None
    fim_suffix: int | None = None
    fim_middle: int | None = None
    fim_pad: int | None = None
    file_sep: int | None = None
    repo_name: int | None = None
    all_ids: frozenset[int] = field(default_factory=frozenset)
    # the fill-in-the-middle layout the checkpoint was trained for (tokenizer_config.json's
    # "loopls_fim_layout"): psm (prefix-suffix-middle, what most code models use) or spm
    fim_layout: str = "psm"

    @property
    def has_fim(self) -> bool:
        return None not in (self.fim_prefix, self.fim_suffix, self.fim_middle)


def _content(token: Any) -> str | None:
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else {}


class Tokenizer:
    """Text <-> token ids. `encode` never adds BOS/EOS; the caller lays out special ids."""

    def __init__(self, backend: Any, kind: str, added: dict[str, int], special: SpecialTokens,
                 chat_template: str | None = None, dummy_prefix: bool = True) -> None:
        self._backend = backend
        self._kind = kind
        # SentencePiece only: does encode start the text with "▁" (Llama's legacy behaviour)?
        self._dummy_prefix = dummy_prefix
        self._unk = backend.id_to_piece(backend.unk_id()) if kind == "sentencepiece" else ""
        self._added = added  # content -> id, for every added token
        self._added_by_id = {i: c for c, i in added.items()}
        self.special = special
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        if self._kind == "tokenizers":
            return self._backend.get_vocab_size(with_added_tokens=True)
        return max(self._backend.get_piece_size(), max(self._added_by_id, default=-1) + 1)

    def token_to_id(self, token: str) -> int | None:
        if token in self._added:
            return self._added[token]
        if self._kind == "tokenizers":
            return self._backend.token_to_id(token)
        tid = self._backend.piece_to_id(token)
        return None if tid == self._backend.unk_id() and token != self._backend.id_to_piece(tid) else tid

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._kind == "tokenizers":
            return self._backend.encode(text, add_special_tokens=False).ids
        if self._dummy_prefix:
            return self._backend.encode(text)
        # SentencePiece cannot switch its dummy prefix off at run time; as transformers does
        # for legacy=False, encode behind the unk piece and drop that piece's tokens.
        skip = len(self._backend.encode(self._unk))
        return self._backend.encode(self._unk + text)[skip:]

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        if self._kind == "tokenizers":
            # An id past the tokenizer (a padding row of the embedding) would blank the whole text.
            known = self.vocab_size
            return self._backend.decode([t for t in ids if 0 <= t < known], skip_special_tokens=skip_special)
        pieces: list[str] = []
        run: list[int] = []
        for tid in ids:
            if tid not in self._added_by_id and not 0 <= tid < self._backend.get_piece_size():
                continue  # a padding row of the model's embedding: no text
            if tid in self._added_by_id:
                if run:
                    pieces.append(self._decode_run(run, first=not pieces))
                    run = []
                if not (skip_special and tid in self.special.all_ids):
                    pieces.append(self._added_by_id[tid])
            else:
                run.append(tid)
        if run:
            pieces.append(self._decode_run(run, first=not pieces))
        return "".join(pieces)

    def _decode_run(self, run: list[int], first: bool) -> str:
        text = self._backend.decode(run)
        # SentencePiece drops the leading "▁" of a run as if it were the dummy prefix that
        # encode adds; only at the very start of a legacy tokenizer's text is it one.
        if not (first and self._dummy_prefix) and self._backend.id_to_piece(run[0]).startswith("\u2581") and not text.startswith(" "):
            text = " " + text
        return text

    def decode_continuation(self, context_id: int, ids: list[int]) -> str:
        """Text of `ids` as it reads after token `context_id` (keeps a leading space that a
        standalone decode would drop as SentencePiece's dummy prefix)."""
        if not ids:
            return ""
        head = self.decode([context_id])
        full = self.decode([context_id, *ids])
        return full[len(head):] if full.startswith(head) else self.decode(ids)

    @classmethod
    def from_folder(cls, folder: Path) -> Tokenizer:
        config = _read_json(folder / "tokenizer_config.json")
        added = {
            _content(tok): int(tid)
            for tid, tok in (config.get("added_tokens_decoder") or {}).items()
            if _content(tok)
        }
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer as HFTokenizer

            try:
                backend = HFTokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as exc:  # tokenizers raises bare Exception subclasses
                raise TokenizerError(f"{folder / 'tokenizer.json'}: cannot load: {exc}") from None
            for tok in backend.get_added_tokens_decoder().values():
                added.setdefault(tok.content, backend.token_to_id(tok.content))
            kind = "tokenizers"
        elif (folder / "tokenizer.model").is_file():
            import sentencepiece as spm

            try:
                backend = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
            except (OSError, RuntimeError) as exc:
                raise TokenizerError(f"{folder / 'tokenizer.model'}: cannot load: {exc}") from None
            kind = "sentencepiece"
        else:
            raise TokenizerError(f"{folder}: no tokenizer.json or tokenizer.model")
        special = _special_tokens(folder, config, added)
        # transformers' LlamaTokenizer: legacy (the default) keeps the dummy prefix.
        dummy_prefix = config.get("legacy", True) is not False and config.get("add_prefix_space") is not False
        return cls(backend, kind, added, special, config.get("chat_template"), dummy_prefix)


def _special_tokens(folder: Path, config: dict[str, Any], added: dict[str, int]) -> SpecialTokens:
    def lookup(name: str) -> int | None:
        content = _content(config.get(name))
        return added.get(content) if content else None

    fim = {
        key: next((added[s] for s in spellings if s in added), None)
        for key, spellings in _FIM_SPELLINGS.items()
    }
    eos: list[int] = []
    gen = _read_json(folder / "generation_config.json")
    model_cfg = _read_json(folder / "config.json")
    for source in (gen.get("eos_token_id"), model_cfg.get("eos_token_id"), lookup("eos_token")):
        for tid in source if isinstance(source, list) else [source]:
            if isinstance(tid, int) and tid not in eos:
                eos.append(tid)
    bos = gen.get("bos_token_id", model_cfg.get("bos_token_id"))
    if bos is None:
        bos = lookup("bos_token")
    special_contents = {
        _content(tok) for tok in (config.get("added_tokens_decoder") or {}).values()
        if isinstance(tok, dict) and tok.get("special", True)
    }
    special_ids = {tid for content, tid in added.items() if content in special_contents}
    special_ids |= {tid for tid in fim.values() if tid is not None} | set(eos)
    layout = config.get("loopls_fim_layout", "psm")
    if layout not in FIM_LAYOUTS:
        raise TokenizerError(f"{folder / 'tokenizer_config.json'}: loopls_fim_layout is {layout!r}, "
                             f"not one of {', '.join(FIM_LAYOUTS)}")
    return SpecialTokens(bos=bos, eos_ids=tuple(eos), all_ids=frozenset(special_ids), fim_layout=layout, **fim)
