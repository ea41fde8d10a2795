"""Tokenizers from checkpoint folders: SentencePiece `tokenizer.model` (as the IQuest models
ship) and `tokenizer.json`, with special, FIM and EOS ids and the chat template read from
the checkpoint's files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sentencepiece as spm

from loopls.engine.model.generate import generate
from loopls.engine.model.checkpoint import CheckpointError
from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.model.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, create_tiny

CODE = [
    "def main(argv):\n    parser = make_parser()\n    return parser.parse(argv)\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
    "for i in range(10):\n    total += values[i] * 2\n",
    "import os\nfrom pathlib import Path\n",
]


def _train_sentencepiece() -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CODE * 8), model_writer=model, vocab_size=400, model_type="bpe",
        # code keeps its whitespace: no normalisation, whitespace-only pieces allowed
        normalization_rule_name="identity", remove_extra_whitespaces=False, byte_fallback=True,
        allow_whitespace_only_pieces=True, user_defined_symbols=list(SPECIAL_TOKENS),
        bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, minloglevel=2, hard_vocab_limit=False,
    )
    return model.getvalue()


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory) -> Path:
    folder = create_tiny(tmp_path_factory.mktemp("sp") / "m", arch="iquestcoder")
    (folder / "tokenizer.json").unlink()
    proto = _train_sentencepiece()
    (folder / "tokenizer.model").write_bytes(proto)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    ids = {t: sp.piece_to_id(t) for t in SPECIAL_TOKENS}
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {str(ids[t]): {"content": t, "special": True} for t in SPECIAL_TOKENS}
    cfg["tokenizer_class"] = "LlamaTokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    # generation_config's EOS list comes first, then config.json's, then eos_token
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<s>"], "eos_token_id": [ids["<|im_end|>"], ids["</s>"]]}))
    return folder


def _sp(folder: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


def test_sentencepiece_round_trip_keeps_code_whitespace(sp_folder: Path) -> None:
    tok = load_checkpoint(sp_folder).tokenizer
    text = "class Stack:\n    def push(self, item):\n\treturn  item  # é\n"
    ids = tok.encode(text)
    assert ids == _sp(sp_folder).encode(text)
    assert tok.decode(ids) == text
    assert tok.count(text) == len(ids)


def test_sentencepiece_special_fim_and_eos_ids(sp_folder: Path) -> None:
    tok = load_checkpoint(sp_folder).tokenizer
    sp = _sp(sp_folder)
    special = tok.special
    assert special.fim_prefix == sp.piece_to_id("<|fim_prefix|>")
    assert special.fim_suffix == sp.piece_to_id("<|fim_suffix|>")
    assert special.fim_middle == sp.piece_to_id("<|fim_middle|>")
    assert special.bos == sp.piece_to_id("<s>")
    assert special.eos_ids[:2] == (sp.piece_to_id("<|im_end|>"), sp.piece_to_id("</s>"))
    assert tok.chat_template == CHAT_TEMPLATE
    body = tok.encode("x = 1")
    assert tok.decode([special.fim_prefix, *body, special.fim_middle]) == "x = 1"
    # legacy (transformers' default for Llama tokenizers): encode starts with the dummy "▁"
    assert tok.decode([special.fim_prefix, *body], skip_special=False) == "<|fim_prefix|> x = 1"


def test_sentencepiece_without_legacy_prefix(sp_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(sp_folder, tmp_path / "nolegacy"))
    cfg = json.loads((folder / "tokenizer_config.json").read_text()) | {"legacy": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_checkpoint(folder).tokenizer
    fim = tok.special.fim_prefix
    for text in ("x = 1", " return x", "\n    pass\n", "é"):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode([fim, *ids], skip_special=False) == "<|fim_prefix|>" + text


def test_sentencepiece_continuation_keeps_its_leading_space(sp_folder: Path) -> None:
    tok = load_checkpoint(sp_folder).tokenizer
    context = tok.encode("total =")
    rest = tok.encode("total = values")[len(context):]
    assert tok.decode(rest) == "values"  # a standalone decode drops the space
    assert tok.decode_continuation(context[-1], rest) == " values"
    middle = tok.special.fim_middle
    assert tok.decode_continuation(middle, tok.encode("  return")) == "  return"


def test_generation_with_a_sentencepiece_model(sp_folder: Path) -> None:
    lm = load_checkpoint(sp_folder)
    pieces: list[str] = []
    gen = generate(lm, lm.tokenizer.encode("def main(argv):\n"), SamplingParams(max_tokens=12, min_tokens=12),
                   on_text=pieces.append)
    assert len(gen.token_ids) == 12
    assert "".join(pieces) == gen.text
    assert gen.text == lm.tokenizer.decode_continuation(lm.tokenizer.encode("def main(argv):\n")[-1], gen.token_ids)


def test_tokenizer_json_checkpoint_reads_chat_template_and_special_ids(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "m", arch="qwen2")
    tok = load_checkpoint(folder).tokenizer
    assert tok.chat_template == CHAT_TEMPLATE
    assert tok.token_to_id("<|im_start|>") in tok.special.all_ids
    text = "for i in range(10):\n    print(i)\n"
    assert tok.decode(tok.encode(text)) == text


def test_unreadable_tokenizer_model_names_the_file(sp_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(sp_folder, tmp_path / "bad"))
    (folder / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(CheckpointError, match=rf"{folder / 'tokenizer.model'}: cannot load"):
        load_checkpoint(folder)


def test_ids_past_the_tokenizer_decode_to_nothing(sp_folder: Path, tmp_path: Path) -> None:
    """Checkpoints pad the embedding past the tokenizer (Qwen2: 151936 rows, ~151.6K tokens);
    a sampled padding id must not blank or break the text."""
    for tok in (load_checkpoint(sp_folder).tokenizer, load_checkpoint(create_tiny(tmp_path / "q", arch="qwen2")).tokenizer):
        ids = tok.encode("x = 1")
        assert tok.decode([*ids, tok.vocab_size + 5, *ids]) == tok.decode(ids + ids)


def test_a_checkpoint_declares_its_fim_layout(tmp_path: Path) -> None:
    folder = create_tiny(tmp_path / "m", arch="qwen2")
    assert load_checkpoint(folder).tokenizer.special.fim_layout == "psm"  # declared by none
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps(cfg | {"loopls_fim_layout": "spm"}))
    assert load_checkpoint(folder).tokenizer.special.fim_layout == "spm"
    cfg_path.write_text(json.dumps(cfg | {"loopls_fim_layout": "middle-first"}))
    with pytest.raises(CheckpointError, match="loopls_fim_layout is 'middle-first'"):
        load_checkpoint(folder)
