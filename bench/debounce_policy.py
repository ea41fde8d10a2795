"""When to start a generation after a keystroke: tokens wasted against latency, by policy.

    python bench/debounce_policy.py [--bursts 20000] [--keys 6 30] [--ttft-ms 34] [--token-ms 26.6] [--tokens 5]

Replays the typist of `bench/lsp_latency.py` (keys 60-200 ms apart, bursts of 6-30 keys
(`--keys`), pauses of 300-1500 ms) through the server's own `TypingDebounce` and models the engine as
the quiet runs measured it: a generation's first token `--ttft-ms` after it starts, then one
token every `--token-ms`, `--tokens` tokens to a suggestion. A keystroke that comes before
the next one's delay has run out costs nothing (no generation started); one that comes after
it cancels a generation, which has by then written one token for every engine step started
before the key (a step that has started runs to its end: the engine hears of a cancel
between steps). A pause gets its suggestion `delay + ttft + (tokens - 1) * token` after its
last key. No machine time: the debounce's arithmetic only, so the table is the same on any
machine for the same arguments.
"""

from __future__ import annotations

import argparse
import random
import statistics

from loopls.lsp.completion import debounce as policy
from loopls.lsp.completion.debounce import TypingDebounce


def keystrokes(bursts: int, seed: int, keys: tuple[int, int] = (6, 30)) -> list[tuple[float, float]]:
    """(time of a keystroke, gap to the next one) for the trace's typist."""
    rng = random.Random(seed)
    times, now = [], 0.0
    for _ in range(bursts):
        for _ in range(rng.randint(*keys)):
            times.append(now)
            now += rng.uniform(0.06, 0.2)
        now += rng.uniform(0.3, 1.5) - 0.13  # the pause replaces the last gap
    return [(t, nxt - t) for t, nxt in zip(times, times[1:])]


def simulate(keys: list[tuple[float, float]], ttft: float, token: float, tokens: int) -> dict:
    debounce = TypingDebounce()
    for _ in range(8):
        debounce.first_token(ttft)
    cancelled = wasted = 0
    latencies = []
    for at, gap in keys:
        delay = debounce.keystroke("u", at)
        if gap <= delay:
            continue  # superseded during its debounce: nothing started
        if gap < 0.3:  # the next key of the burst cancels it
            cancelled += 1
            starts = [delay] + [delay + ttft + i * token for i in range(tokens)]
            wasted += sum(1 for s in starts if s < gap)
        else:
            latencies.append(delay + ttft + (tokens - 1) * token)
    pauses = len(latencies)
    useful = pauses * tokens
    return {"pauses": pauses, "cancelled": cancelled, "wasted": wasted,
            "share": wasted / max(1, wasted + useful), "p50": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", type=int, nargs=2, default=(6, 30), help="fewest and most keys of a burst")
    parser.add_argument("--ttft-ms", type=float, default=34.0)
    parser.add_argument("--token-ms", type=float, default=26.6)
    parser.add_argument("--tokens", type=int, default=5)
    args = parser.parse_args()
    keys = keystrokes(args.bursts, args.seed, tuple(args.keys))
    ttft, token = args.ttft_ms / 1000, args.token_ms / 1000
    print(f"# {args.bursts} bursts of {args.keys[0]}-{args.keys[1]} keys ({len(keys)} keystrokes), seed {args.seed}; first token {args.ttft_ms} ms, "
          f"then {args.token_ms} ms per token, {args.tokens} tokens per suggestion")
    print("| policy | generations cancelled by a key of the burst | tokens they wrote | share of all tokens "
          "| pause -> suggestion, median |")
    print("|---|---|---|---|---|")
    for name, settings in POLICIES:
        saved = {k: getattr(policy, k) for k in settings}
        for k, v in settings.items():
            setattr(policy, k, v)
        try:
            r = simulate(keys, ttft, token, args.tokens)
        finally:
            for k, v in saved.items():
                setattr(policy, k, v)
        print(f"| {name} | {r['cancelled']} ({100 * r['cancelled'] / r['pauses']:.0f} per 100 pauses) "
              f"| {r['wasted']} | {100 * r['share']:.1f}% | {1000 * r['p50']:.0f} ms |")


POLICIES: list[tuple[str, dict]] = [
    ("no lead (quantile 0.9 + margin)", {"MAX_LEAD_S": 0.0}),
    ("lead of one first token (main before this change)", {"STILL_TYPING": 1.0}),
    ("lead where another key is at most 50% likely", {"STILL_TYPING": 0.5}),
    ("lead where another key is at most 25% likely (the default)", {"STILL_TYPING": 0.25}),
    ("lead where another key is at most 10% likely", {"STILL_TYPING": 0.1}),
    # shorter delays: the delay's quantile and margin (the default: 0.9 and 20 ms)
    ("quantile 0.9, margin 10 ms", {"MARGIN_S": 0.01}),
    ("quantile 0.9, no margin", {"MARGIN_S": 0.0}),
    ("quantile 0.85, margin 10 ms", {"QUANTILE": 0.85, "MARGIN_S": 0.01}),
    ("quantile 0.8, no margin", {"QUANTILE": 0.8, "MARGIN_S": 0.0}),
    ("quantile 0.75, no margin", {"QUANTILE": 0.75, "MARGIN_S": 0.0}),
]

if __name__ == "__main__":
    main()
