"""The secret detector, both directions: secrets of the corpus never reach a prompt, a model
writing one is caught, and ordinary code (loopls' own source, Python's standard library) has
no findings."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from secret_corpus import load_corpus, leaked

from loopls.context.privacy import REDACTED, inserted_secret, redact, redact_pieces
from loopls.context.secrets import find_secrets, is_config_path

CASES = load_corpus()
ROOT = Path(__file__).resolve().parents[2]


def test_the_corpus_covers_the_formats_asked_for() -> None:
    rules = {f.rule for case in CASES for f in find_secrets(case.text, case.path)}
    assert {"aws-access-key-id", "github-token", "gitlab-token", "slack-token", "stripe-key", "openai-key",
            "jwt", "private-key", "url-credentials", "secret-assignment", "google-api-key",
            "azure-client-secret"} <= rules
    suffixes = {Path(c.path).suffix or Path(c.path).name for c in CASES}
    assert {".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".yaml", ".yml", ".json", ".ini", ".toml",
            ".sh", ".properties", ".xml", ".md", "Dockerfile"} <= suffixes


@pytest.mark.parametrize("case", CASES, ids=str)
def test_redaction_hides_every_secret_and_keeps_lines(case) -> None:
    out = redact(case.text, case.path)
    for secret in case.secrets:
        assert leaked(secret, out) is None, (secret, out)
    assert out.count("\n") == case.text.count("\n")
    assert REDACTED in out
    assert find_secrets(out, case.path) == []  # idempotent: nothing left to find


@pytest.mark.parametrize("case", [c for c in CASES if not is_config_path(c.path)], ids=str)
def test_redaction_without_a_path_still_hides_code_secrets(case) -> None:
    """Buffer-only prompts (untitled documents) have no path: the rules for code still apply."""
    out = redact(case.text)
    for secret in case.secrets:
        assert leaked(secret, out) is None, (secret, out)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_cursor_inside_a_secret_hides_both_halves(case) -> None:
    for secret in case.secrets:
        at = case.text.index(secret)
        for cursor in (at + 1, at + len(secret) // 2, at + len(secret) - 1):
            before, after = redact_pieces(case.text, [(0, cursor), (cursor, len(case.text))], case.path)
            assert leaked(secret, before + after) is None, (cursor, before, after)
            assert leaked(secret, before + "|" + after) is None


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_window_edge_inside_a_secret_hides_the_rest(case) -> None:
    """The FIM window may start or end inside a secret (or a key block): what is inside the
    window is still recognised, because detection looks beyond the window."""
    for secret in case.secrets:
        at = case.text.index(secret)
        start = at + len(secret) // 2
        (piece,) = redact_pieces(case.text, [(start, len(case.text))], case.path)
        assert leaked(secret[len(secret) // 2:], piece) is None, piece
        (piece,) = redact_pieces(case.text, [(0, start)], case.path)
        assert leaked(secret[:len(secret) // 2], piece) is None, piece


@pytest.mark.parametrize("case", CASES, ids=str)
def test_model_output_writing_a_secret_is_caught(case) -> None:
    for secret in case.secrets:
        at = case.text.index(secret)
        line_start = case.text.rfind("\n", 0, at) + 1
        line_end = case.text.find("\n", at)
        # the model completes the value after its key, or writes the whole line
        doc = case.text[:at] + case.text[at + len(secret):]
        assert inserted_secret(doc, at, at, secret, case.path) is not None, secret
        doc = case.text[:line_start] + case.text[line_end:]
        assert inserted_secret(doc, line_start, line_start, case.text[line_start:line_end], case.path) is not None
        # ... and nothing is found when it writes ordinary code
        assert inserted_secret(doc, len(doc), len(doc), "value = compute(1, 2)\n", case.path) is None


def test_ordinary_code_is_left_alone() -> None:
    text = (
        "def login(user, password):\n    token = get_token(user)\n    if password == '':\n        return None\n"
        "max_tokens = 48\ntoken_type = 'bearer'\nbos_token = '<s>'\nPASSWORD_MIN_LENGTH = 8\n"
        "api_key = os.environ['API_KEY']\nsecret = settings.SECRET\nkey = 'name'\n"
        "password = '<redacted>'\napi_key = '${API_KEY}'\ntoken = f'{prefix}-{uuid4()}'\n"
        "url = 'https://example.com/path?q=1'\nAUTH_HEADER = 'Authorization'\n"
    )
    assert find_secrets(text, "app.py") == []
    assert redact(text, "app.py") == text


def test_a_long_run_of_letters_is_not_a_key_line() -> None:
    """A line of 60+ letters alone looks like a PEM body line by its shape; what an untrained
    model writes when it repeats itself is not random enough to be one."""
    looping = "    totvaluesYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY\n"
    assert find_secrets(looping, "pricing.py") == []
    body = "    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R\n"
    assert [f.rule for f in find_secrets(body, "pricing.py")] == ["private-key-body"]


def _python_sources() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py")) + sorted(p for p in stdlib.glob("*/*.py") if "test" not in p.parts[-2])
    ours = [p for d in ("lsp", "context", "engine", "kernels", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    return files + ours


# Literal passwords that really are in those sources (a docstring example): found on purpose.
_TRUE_FINDINGS = {("request.py", "geheim$parole")}


def test_no_findings_in_loopls_and_the_standard_library() -> None:
    files = _python_sources()
    assert len(files) > 300
    unexpected = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for f in find_secrets(text, str(path)):
            if (path.name, text[f.start:f.end]) not in _TRUE_FINDINGS:
                unexpected.append(f"{path}: {f.rule}: {text[f.start:f.end]!r}")
    assert unexpected == []


def _cursors(case) -> list[int]:
    """Inside every secret (start, middle, end) and at the end of the text."""
    spots = [len(case.text)]
    for secret in case.secrets:
        at = case.text.index(secret)
        spots += [at + 1, at + len(secret) // 2, at + len(secret) - 1]
    return spots


def test_buffer_only_prompts_never_carry_a_secret(tiny_checkpoint) -> None:
    """No index (untitled buffers, files outside the workspace, `loopls complete` outside git):
    the buffer's own FIM window, whatever the cursor splits."""
    from context_helpers import tokenizer

    from loopls.context.assemble import buffer_prompt
    from loopls.context.packing import Packer

    tok = tokenizer(tiny_checkpoint)
    packer = Packer(tok, tok.special)
    for case in CASES:
        for path in (case.path, None if not is_config_path(case.path) else case.path):
            for cursor in _cursors(case):
                for budget in (64, 2048):
                    prompt = tok.decode(buffer_prompt(packer, path, case.text, cursor, budget).token_ids)
                    for secret in case.secrets:
                        assert leaked(secret, prompt) is None, (case.path, cursor, budget, prompt)


def test_packed_prompts_never_carry_a_secret(tmp_path, tiny_checkpoint) -> None:
    """The corpus as a project: snippets of other files and the cursor's own file, every
    secret of every file, the cursor inside each."""
    from context_helpers import make_repo, tokenizer

    from loopls.context.assemble import ContextEngine
    from loopls.context.project import Project

    files = {case.path: case.text for case in CASES}
    files["main.py"] = "from settings.base import password\nfrom llm.client import client\n\nresult = client\n"
    make_repo(tmp_path, [files])
    index = Project(tmp_path)
    index.build()
    tok = tokenizer(tiny_checkpoint)
    engine = ContextEngine(index, tok, tok.special)
    every = [s for case in CASES for s in case.secrets]
    main = files["main.py"]
    prompt = tok.decode(engine.assemble("main.py", main, len(main), 8192).token_ids)
    assert "settings/base.py" in prompt or "llm/client.py" in prompt  # other files are in it
    for secret in every:
        assert leaked(secret, prompt) is None, secret
    assert {case.path for case in CASES} <= set(index.files)
    for case in CASES:
        for cursor in _cursors(case):
            packed = engine.assemble(case.path, case.text, cursor, 2048)
            prompt = tok.decode(packed.token_ids)
            for secret in every:
                assert leaked(secret, prompt) is None, (case.path, cursor, secret)
            assert packed.redactions > 0
