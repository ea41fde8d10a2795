"""What went into a packed prompt and why, as the JSON of `loopls context --json` and of
the `loopls/explainContext` request (1-based, inclusive line ranges; workspace-relative paths)."""

from __future__ import annotations

from .packing import PackedContext


def explain(packed: PackedContext) -> dict:
    return {
        "prompt_tokens": packed.prompt_tokens,
        "budget": packed.budget,
        "header_tokens": packed.header_tokens,
        "redactions": packed.redactions,
        "snippets": [
            {"path": s.path, "start_line": s.start_line + 1, "end_line": s.end_line + 1,
             "source": s.source, "tokens": s.tokens, "score": round(s.score, 4)}
            for s in packed.snippets
        ],
    }


def explain_text(packed: PackedContext) -> str:
    """A table for people: one snippet a line."""
    rows = [f"prompt: {packed.prompt_tokens} tokens of {packed.budget} "
            f"({len(packed.snippets)} snippets, {packed.header_tokens} in labels, "
            f"{packed.redactions} secrets redacted)"]
    for s in packed.snippets:
        rows.append(f"{s.tokens:7d}  {s.score:8.3f}  {s.source:<28} {s.path}:{s.start_line + 1}-{s.end_line + 1}")
    return "\n".join(rows)
