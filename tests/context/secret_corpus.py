"""The secret corpus (data/secret_corpus.txt): blocks of code and configuration, each with the
secrets it holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "secret_corpus.txt"


@dataclass(frozen=True)
class Case:
    path: str
    text: str
    secrets: tuple[str, ...]

    def __str__(self) -> str:
        return self.path


def load_corpus() -> list[Case]:
    cases: list[Case] = []
    path, secrets, lines = None, [], []

    def flush() -> None:
        if path is not None:
            text = "\n".join(lines).strip("\n") + "\n"
            missing = [s for s in secrets if s not in text]
            assert not missing, f"{path}: secrets not in the text: {missing}"
            cases.append(Case(path, text, tuple(secrets)))

    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.startswith("### path: "):
            flush()
            path, secrets, lines = line.removeprefix("### path: "), [], []
        elif line.startswith("### secret: "):
            secrets.append(line.removeprefix("### secret: "))
        elif path is not None:
            lines.append(line)
    flush()
    return cases


def leaked(secret: str, text: str, window: int = 8) -> str | None:
    """A piece of `secret` (`window` characters, or all of a shorter one) found in `text`."""
    if len(secret) <= window:
        return secret if secret in text else None
    return next((secret[i:i + window] for i in range(len(secret) - window + 1) if secret[i:i + window] in text), None)
