"""Privacy: ignored, secret and outside files never reach a prompt; secrets are redacted."""

from __future__ import annotations

import os

import pytest
from context_helpers import make_repo, tokenizer, write

from loopls.context.assemble import ContextEngine
from loopls.context.project import Project
from loopls.context.privacy import REDACTED, is_secret_path, redact
from loopls.context.workspace import IgnoreRules, Workspace, WorkspaceError

MARK = "LEAKED_TOKEN_MARK"
AWS = "AKIAIOSFODNN7EXAMPLE"


def _tree():
    return {
        "app.py": f"from config import settings\n\ndef run():\n    return settings.{MARK}_name\n",
        "config.py": f"settings = object()\napi_key = \"{'z' * 24}\"\naws = '{AWS}'\n",
        ".env": f"{MARK}_name=1\n",
        "deploy/id_rsa": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{MARK}\n",
        "certs/server.pem": f"{MARK}\n",
        ".ssh/config": f"Host {MARK}_name\n",
        "secret_stuff/notes.py": f"def {MARK}_name():\n    pass\n",
        "build_out/gen.py": f"def {MARK}_name():\n    pass\n",
        "vendor/app.min.js": "var a=1;" * 2000 + MARK,
        "blob.bin": "\0" * 10 + MARK,
        ".gitignore": "build_out/\n",
        ".looplsignore": "secret_stuff/\n",
        ".env.example": "NAME=example\n",
    }


def test_secret_paths():
    for path in (".env", ".env.local", "a/b/.env", "id_rsa", "id_ed25519.pub", "k.pem", "x/credentials.json",
                 ".aws/credentials", ".npmrc", "secrets.yaml", "prod.tfvars"):
        assert is_secret_path(path), path
    for path in (".env.example", "env.py", "keys.py", "credentials_test.go", "README.md"):
        assert not is_secret_path(path), path


def test_redaction_keeps_lines_and_hides_values():
    text = (f"aws = '{AWS}'\npassword = \"hunter2hunter2\"\nurl = 'https://bob:s3cretpw@host/x'\n"
            "token = get_token()\nname = 'plain value'\n")
    out = redact(text)
    assert AWS not in out and "hunter2hunter2" not in out and "s3cretpw" not in out
    assert out.count(REDACTED) == 3 and out.count("\n") == text.count("\n")
    assert "token = get_token()" in out and "'plain value'" in out


def test_ignore_rules():
    rules = IgnoreRules.from_text("*.log\n/top.txt\nbuild/\n!keep.log\ndocs/*.md\n")
    assert rules.ignored("a/b.log") and not rules.ignored("a/keep.log")
    assert rules.ignored("top.txt") and not rules.ignored("sub/top.txt")
    assert rules.ignored("x/build/y.py") and rules.ignored("docs/a.md") and not rules.ignored("docs/a.py")


@pytest.mark.parametrize("use_git", [True, False])
def test_ignored_and_secret_files_never_reach_a_prompt(tmp_path, tiny_checkpoint, use_git):
    root = tmp_path / "ws"
    root.mkdir()
    if use_git:
        make_repo(root, [{"README.md": "hello\n"}])
    write(root, _tree())
    outside = tmp_path / "outside.py"
    outside.write_text(f"def {MARK}_name():\n    pass\n")
    os.symlink(outside, root / "link.py")
    index = Project(root)
    index.build()
    assert set(index.files) <= {"app.py", "config.py", ".gitignore", ".looplsignore", ".env.example", "README.md"}
    tok = tokenizer(tiny_checkpoint)
    engine = ContextEngine(index, tok, tok.special)
    text = index.text("app.py")
    for budget in (128, 1024, 8192):
        decoded = tok.decode(engine.assemble("app.py", text, len(text) - 5, budget).token_ids)
        assert MARK not in decoded.replace(f"settings.{MARK}_name", "")
        assert AWS not in decoded and "z" * 24 not in decoded
    with pytest.raises(WorkspaceError):
        Workspace(root).relative(outside)
