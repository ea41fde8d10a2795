"""The byte-level BPE tokenizer, trained with `tokenizers` on the corpus.

Its special tokens are the ones loopls reads from `tokenizer_config.json` (the same list as
`loopls model create-tiny` writes): FIM prefix/suffix/middle/pad, file separator, repository
name, chat and end-of-text tokens, so the packer lays prompts out with real token ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from loopls.engine.model.config import ModelConfig
from loopls.engine.model.tiny import SPECIAL_TOKENS, tokenizer_config

from .export import write_json


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A `tokenizers.Tokenizer` with `vocab_size` entries, special tokens first (ids 0..10)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def special_ids(tok) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


def eos_ids(tok) -> list[int]:
    ids = special_ids(tok)
    return [ids["</s>"], ids["<|im_end|>"], ids["<|endoftext|>"]]


def write_tokenizer(tok, folder: Path, config: ModelConfig) -> None:
    """tokenizer.json and tokenizer_config.json as create-tiny writes them (BOS and EOS ids go
    in config.json, which the loader reads when there is no generation_config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", tokenizer_config(special_ids(tok), config))
