"""The waste ledger: why generated tokens were not shown (pure logic)."""

from __future__ import annotations

from loopls.context.languages import Languages
from loopls.lsp.completion.site import SiteReader
from loopls.lsp.completion.waste import WasteLedger

READER = SiteReader(Languages())


def test_cancelled_generations_are_tallied_by_reason_with_the_tokens_written_after_the_cancel() -> None:
    ledger = WasteLedger()
    ledger.cancelled("typing", tokens=1, seen=0, latency_s=0.02)
    ledger.cancelled("typing", tokens=0, seen=0, latency_s=0.04)
    ledger.cancelled("resumed", tokens=6, seen=5, latency_s=0.03)
    ledger.empty(4)
    out = ledger.as_json()
    assert out["typing"] == {"generations": 2, "tokens": 1, "after_cancel": 1, "before_first": 2}
    assert out["resumed"] == {"generations": 1, "tokens": 6, "after_cancel": 1, "before_first": 0}
    assert out["empty"]["tokens"] == 4
    assert out["cancel_ms"] == {"p50": 30.0, "max": 40.0, "n": 3}


def test_dropped_candidates_say_which_step_dropped_them() -> None:
    text = "class Item:\n    def total_value(self) -> float:\n        return 1\n"
    offset = text.index(":\n", text.index("float")) + 1
    site = READER.read(text, offset, "python")
    ledger = WasteLedger()
    ledger.dropped("", site, 8)
    ledger.dropped(":", site, 8)
    ledger.dropped("\n        return 1", site, 8)  # what the next line already says
    out = ledger.as_json()
    assert out["dropped"] == {"nothing": 1, "line check": 1, "filters": 1}
    assert out["dropped_last"][1] == ["line check", "    def total_value(self) -> float:", ":"]


def test_tokens_an_answer_showed_are_no_waste() -> None:
    ledger = WasteLedger()
    ledger.cancelled("moved", tokens=10, seen=8, latency_s=None, shown=6)  # answered with its first 6 tokens
    ledger.rest(7)  # another ran on after its answer: 7 tokens unshown...
    ledger.rest_shown(5)  # ... 5 of which a later request showed
    out = ledger.as_json()
    assert out["moved"] == {"generations": 1, "tokens": 4, "after_cancel": 2, "before_first": 0}
    assert out["rest"] == {"generations": 1, "tokens": 2, "after_cancel": 0, "before_first": 0, "shown_later": 5}
