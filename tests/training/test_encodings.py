"""The row builder's faster paths change nothing: piece-wise token ids equal the tokenizer's,
names' distances from the cursor equal the straightforward count, and rows built through
them equal rows built without them, for a seed."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from loopls.engine.model.models import default_model_dir
from loopls.engine.model.tokenizer import Tokenizer
from training import corpus
from training.crossfile import IDENT, Repository, _nearest
from training.encodings import PieceEncoder
from training.outline import outline_of
from training.recipe import SMALL
from training.samples import FIM_ONLY, SampleBuilder

PACKAGE = Path(sysconfig.get_paths()["stdlib"]) / "email"  # a real package with cross-file names


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_folder(default_model_dir())


@pytest.fixture(scope="module")
def files() -> list[corpus.SourceFile]:
    out = []
    for path in sorted(PACKAGE.glob("*.py")):
        rel = f"email/{path.name}"
        tree = corpus.file_problem(rel, path.read_bytes())
        if not isinstance(tree, str):
            out.append(corpus.SourceFile("email", rel, path.read_text(encoding="utf-8"), outline_of(tree, rel)))
    return out


def test_piece_ids_equal_the_tokenizers(tokenizer, files) -> None:
    encoder = PieceEncoder(tokenizer)
    rng = random.Random(0)
    texts = [f.text for f in files]
    for f in files:
        for _ in range(6):
            a = rng.randrange(len(f.text))
            texts.append(f.text[a:a + rng.randint(1, 6000)])
    # whitespace of every kind around the cuts, a special token's text, non-ASCII
    texts.append("x = 1\n\t\t  y = 2\r\n    \x0b z\u00a0 \u3000w\n\n\n  <|endoftext|>  \n   é  ü\n" * 20)
    for _ in range(2):  # the second time from remembered pieces
        assert [encoder.encode(t) for t in texts] == [tokenizer.encode(t) for t in texts]


def _nearest_reference(rows: list[str], line: int) -> dict[str, int]:
    nearest: dict[str, int] = {}
    for row, text in enumerate(rows):
        for name in IDENT.findall(text):
            if nearest.get(name, abs(row - line) + 1) > abs(row - line):
                nearest[name] = abs(row - line)
    return nearest


def test_names_nearest_to_the_cursor_in_order_of_first_use(files) -> None:
    repo = Repository(files)
    rng = random.Random(1)
    for f in files:
        rows = f.text.split("\n")
        for line in (0, len(rows) - 1, rng.randrange(len(rows))):
            got = _nearest(repo, rows, line)
            want = _nearest_reference(rows, line)
            assert list(got.items()) == list(want.items())


def test_rows_through_the_fast_paths_equal_plain_rows(tokenizer, files) -> None:
    fast = SampleBuilder(files, tokenizer, seed=3)
    plain = SampleBuilder(files, tokenizer, seed=3)
    plain.encoder = tokenizer  # the tokenizer itself, before any packer is made
    for i in range(6):
        assert fast.row(i, 1024, (256, 512, 1024), "short") == plain.row(i, 1024, (256, 512, 1024), "short")
    assert fast.row(0, 2048, (768, 2048), "fim", FIM_ONLY, True) == plain.row(0, 2048, (768, 2048), "fim", FIM_ONLY, True)
    assert SMALL.fim_layout in ("psm", "spm")
