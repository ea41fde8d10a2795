"""Training samples are the prompts loopls sends: given the same candidates, a FIM sample's
prompt is token for token what the server's context engine packs; rows are deterministic."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loopls.context.assemble import ContextEngine
from loopls.context.project import Project
from loopls.engine.model.models import default_model_dir
from loopls.engine.model.tokenizer import Tokenizer
from training import corpus
from training.samples import PAD_LABEL, SampleBuilder

FILES = {
    "proj/util.py": (
        "def scale(values, factor=2):\n"
        '    """Multiply every value by factor."""\n'
        "    return [v * factor for v in values]\n\n\n"
        "class Box:\n    def __init__(self, width, height):\n        self.width = width\n"
        "        self.height = height\n\n    def area(self):\n        return self.width * self.height\n"
    ),
    "proj/main.py": (
        "from .util import Box, scale\n\n\n"
        "def total_area(boxes):\n    return sum(box.area() for box in boxes)\n\n\n"
        "def doubled(values):\n    return scale(values, factor=2)\n\n\n"
        "def report(boxes):\n    areas = [b.area() for b in boxes]\n    return doubled(areas)\n"
    ),
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_folder(default_model_dir())


def _source(path: str, text: str) -> corpus.SourceFile:
    tree = corpus.file_problem(path, text.encode())
    from training.outline import outline_of

    return corpus.SourceFile("demo", path, text, outline_of(tree, path))


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "demo"  # the server names the repository after the workspace folder
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.mark.parametrize("middle", ["scale(values, factor=2)", "box.area() for box in boxes)\n"])
def test_fim_sample_prompt_is_the_servers_prompt(workspace: Path, tokenizer: Tokenizer, tmp_path: Path,
                                                 middle: str) -> None:
    path = "proj/main.py"
    text = FILES[path]
    a = text.index(middle)
    b = a + len(middle)
    edited = text[:a] + text[b:]
    index = Project(workspace, tmp_path / "cache")
    index.build()
    index.update_document(path, edited)
    engine = ContextEngine(index, tokenizer, tokenizer.special, history=False)
    cands = engine.candidates(path, edited, a)
    assert any(c.path == "proj/util.py" for c in cands)  # there is cross-file context to render
    builder = SampleBuilder([_source(p, t) for p, t in FILES.items()], tokenizer)
    middle_ids = tokenizer.encode(middle) + [tokenizer.token_to_id("<|endoftext|>")]
    for layout in ("psm", "spm"):  # the checkpoint's own (spm) and the other one
        server = engine.assemble(path, edited, a, 512, layout).token_ids
        sample = builder.fim_sample(builder.repos["demo"].files[path], a, b, 512 + len(middle_ids), layout, cands)
        assert sample.ids == server + middle_ids
        assert server[0] == tokenizer.special.repo_name and tokenizer.special.file_sep in server
        assert server[-1] == tokenizer.special.fim_middle
    assert engine.assemble(path, edited, a, 512).token_ids == server  # the shipped model declares spm


def test_spm_and_l2r_layouts(tokenizer: Tokenizer) -> None:
    builder = SampleBuilder([_source(p, t) for p, t in FILES.items()], tokenizer)
    f = builder.repos["demo"].files["proj/main.py"]
    s = tokenizer.special
    a = f.text.index("scale(values")
    spm = builder.fim_sample(f, a, a + 5, 400, "spm", []).ids
    assert spm.index(s.fim_suffix) < spm.index(s.fim_prefix) < spm.index(s.fim_middle)
    assert tokenizer.decode(spm[spm.index(s.fim_middle) + 1:]) == "scale"
    l2r = builder.l2r_sample(f, f.text.index("def doubled"), 400, []).ids
    assert not {s.fim_prefix, s.fim_suffix, s.fim_middle} & set(l2r)
    assert l2r[0] == s.repo_name and tokenizer.decode(l2r).endswith(f.text[f.text.index("def doubled"):])


def test_rows_are_deterministic_and_labelled(tokenizer: Tokenizer) -> None:
    files = [_source(p, t) for p, t in FILES.items()]
    one = SampleBuilder(files, tokenizer, seed=7)
    other = SampleBuilder(list(reversed(files)), tokenizer, seed=7)
    ids, labels = one.row(3, 256, (96, 128), "short")
    assert (ids, labels) == other.row(3, 256, (96, 128), "short")
    assert (ids, labels) != one.row(4, 256, (96, 128), "short")
    assert len(ids) == len(labels) == 256
    real = [i for i, label in enumerate(labels) if label != PAD_LABEL]
    assert real and all(labels[i] == ids[i + 1] for i in real if i + 1 < len(ids))


def test_samples_mix_all_modes(tokenizer: Tokenizer) -> None:
    builder = SampleBuilder([_source(p, t) for p, t in FILES.items()], tokenizer, seed=1)
    rng = random.Random(0)
    modes = {s.mode for s in (builder.sample(rng, 300) for _ in range(60)) if s is not None}
    assert modes == {"psm", "spm", "l2r"}


def test_line_middles_start_where_an_editor_asks() -> None:
    """Line middles start at the indentation, before a name (after a space, `.`, `(`: the
    cursor after a typed word, and CrossCodeEval's split) or anywhere, in the mix's shares."""
    from training.samples import _line_middle

    text = FILES["proj/main.py"]
    rng = random.Random(0)
    at_word = [m for m in (_line_middle(text, rng, whole=0.0, word=1.0) for _ in range(200)) if m is not None]
    assert len(at_word) > 150 and all(b == len(text) or text[b] == "\n" for _, b in at_word)
    for a, _ in at_word:
        assert text[a].isalpha() or text[a] == "_"
        assert a == 0 or not (text[a - 1].isalnum() or text[a - 1] == "_")  # never inside a word
    assert {text[a - 1] for a, _ in at_word} >= {" ", ".", "("}
    whole = [m for m in (_line_middle(text, rng, whole=1.0, word=0.0) for _ in range(50)) if m is not None]
    assert len(whole) > 40
    assert all(a == 0 or text[a - 1] in " \n" and text[text.rfind("\n", 0, a) + 1:a].strip() == "" for a, _ in whole)


def test_line_middles_start_before_cross_file_names() -> None:
    """With `cross` 1, a line holding a name defined in another file of the repository (and
    not in this one) is cut right before such a name, as CrossCodeEval cuts its targets; a line
    without one falls back to a name start."""
    from training.crossfile import Repository
    from training.samples import _line_middle

    repo = Repository([_source(p, t) for p, t in FILES.items()])
    path = "proj/main.py"
    assert repo.defined_elsewhere(path, "scale") and repo.defined_elsewhere(path, "Box")
    assert not repo.defined_elsewhere(path, "doubled")  # defined in the file itself
    assert not repo.defined_elsewhere("proj/util.py", "scale")
    assert not repo.defined_elsewhere(path, "sum")  # defined nowhere in the repository
    text = FILES[path]
    rng = random.Random(0)
    cuts = [m for m in (_line_middle(text, rng, whole=0.0, word=0.0, cross=1.0,
                                     elsewhere=lambda n: repo.defined_elsewhere(path, n)) for _ in range(200))
            if m is not None]
    crossing = 0
    for a, b in cuts:
        line = text[text.rfind("\n", 0, a) + 1:b]
        if "scale" in line or "Box" in line:
            assert text.startswith(("scale", "Box"), a)
            crossing += 1
        else:
            assert text[a].isalpha() or text[a] == "_"
            assert a == 0 or not (text[a - 1].isalnum() or text[a - 1] == "_")
    assert crossing > 20
