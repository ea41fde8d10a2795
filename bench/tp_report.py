"""The table and the JSON of tp_serving_bench.py: rooflines, speed-ups, profiles, checks."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from loopls.engine.model.config import ModelConfig

# The IQuest-Coder-V1 deployment report's figures for a 40B model on 4 x A100 (8 -> 32 concurrent).
REPORT_4XA100 = "P50 14.2→22.6 ms per output token, 214→567 tok/s (8→32 concurrent)"


def weight_bytes_per_gpu(config: ModelConfig, world: int, itemsize: int) -> tuple[float, float]:
    """(decoder-layer bytes, head bytes) one GPU reads per pass: layers split, head whole."""
    h, d = config.hidden_size, config.head_dim
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    kv_rank = kv // world if config.num_key_value_heads >= world else d  # a replicated KV head
    layer = h * q // world + 2 * h * kv_rank + q * h // world + 3 * h * config.intermediate_size // world
    return float(layer * config.num_hidden_layers * itemsize), float(config.vocab_size * h * itemsize)


def roofline(config: ModelConfig, world: int, bandwidth: float, batch: int, context: int, itemsize: int = 2) -> float:
    """Tokens/s if one GPU's bytes of a decode step moved at `bandwidth`: the layers once per
    loop, the head once, and loop 0's K/V of every sequence once per loop (a later loop's
    global attention reads it again)."""
    layers, head = weight_bytes_per_gpu(config, world, itemsize)
    kv_heads = max(config.num_key_value_heads // world, 1)
    kv = batch * context * config.num_hidden_layers * kv_heads * config.head_dim * 2 * itemsize
    step = layers * config.loop_num + head + kv * config.loop_num
    return batch * bandwidth / step


class Report:
    def __init__(self, args, out_dir: str | None) -> None:
        self.args = args
        self.path = Path(out_dir) / "tp_serving_bench.json" if out_dir else None
        self.itemsize = 4 if args.cpu_smoke else 2
        self.status: dict[str, str] = {}
        self.data: dict = {"args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "decode": {}, "loop": {}}
        self.tests: dict = {}
        self.rows: list[tuple[str, ...]] = []
        self.loop_rows: list[tuple[str, ...]] = []
        self.profiles: list[tuple[str, ...]] = []
        self.kernels: list[tuple[str, list]] = []  # (run, rank 0's top kernels) of batch-1 profiles
        self.gemms: list[dict] = []  # GEMM probe rows (tp_drivers.gemm_probe)
        self.choices: list[tuple[str, list[list[dict]]]] = []  # (run, per rank: decode GEMM choices)
        self._one: dict = {}  # (mode, batch) -> TP=1 tok/s
        self._sync: dict = {}  # (world, all-reduce, batch) -> sync tok/s
        self._checks: dict = {}  # (world, mode) -> greedy check
        self._decodes: dict = {}  # (world, all-reduce) -> sync decode runs

    def header(self) -> str:
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env = {k: v for k, v in __import__("os").environ.items() if k.startswith(("NCCL_", "TORCH_SYMM", "NVSHMEM"))}
        self.data["machine"] = {"gpus": gpus, "torch": torch.__version__, "python": platform.python_version(), "env": env}
        return f"torch {torch.__version__}, GPUs {gpus or 'none (CPU ranks)'}, multicast settings {env}"

    # -- 14B decode ------------------------------------------------------------------------
    def decode(self, config: ModelConfig, world: int, res: dict) -> None:
        bw = res["bandwidth"]
        self.data["decode"][f"tp{world}"] = _jsonable(res)
        print(f"   copy bandwidth {bw / 1e12:.2f} TB/s; pool {res['pool'] or res['blocks']}", flush=True)
        self.gemms += res.get("gemms", [])
        for variant, got in res["variants"].items():
            name = f"14B TP={world}" + (f" {variant}" if world > 1 else "")
            if "skipped" in got or "error" in got and "modes" not in got:
                self.rows.append((name, got.get("skipped") or got.get("error"), "", "", "", "", ""))
                print(f"   {name}: {self.rows[-1][1]}", flush=True)
                continue
            for mode, run in got["modes"].items():
                self._decode_row(config, world, f"{name} {mode}", mode, got, run, bw)

    def _decode_row(self, config: ModelConfig, world: int, name: str, mode: str, got: dict, run: dict, bw: float) -> None:
        cells = [name]
        for batch, d in sorted(run["decode"].items()):
            roof = roofline(config, world, bw, batch, self.args.context, self.itemsize)
            base, sync = self._one.get((mode, batch)), self._sync.get((world, got.get("running"), batch))
            speed = f"{d['tok_s']:.0f} ({100 * d['tok_s'] / roof:.0f}% roof)" if math.isfinite(roof) else f"{d['tok_s']:.1f}"
            speed += f", {d['tok_s'] / base:.2f}× TP=1" if base and world > 1 else ""
            speed += f", {d['tok_s'] / sync:.2f}× sync" if sync and mode == "async" else ""
            cells.append(speed)
            self._profile_rows(name, batch, d["profile"])
            if world == 1:
                self._one[(mode, batch)] = d["tok_s"]
            if mode == "sync":
                self._sync[(world, got.get("running"), batch)] = d["tok_s"]
        b1 = run["decode"].get(1, {}).get("profile", [])
        ar = [p.get("all_reduce", 0.0) for p in b1]
        wall = [p.get("wall", float("nan")) for p in b1]
        cells.append(", ".join(f"r{r} {a:.2f} ms ({100 * a / w:.0f}%)" for r, (a, w) in enumerate(zip(ar, wall))) if world > 1 else "—")
        us = got.get("allreduce_us", {})
        cells.append(", ".join(f"{rows}×h {t:.1f} µs" for rows, t in sorted(us.items())) or "—")
        cells.append(self._check(world, mode, run.get("check")) + self._same_decode(world, got.get("running"), mode, run))
        cells.append("graphs" if got.get("graphs") else "eager")
        if any(run.get("gemm_choices") or []) and all(f"TP={world}" not in n for n, _ in self.choices):
            self.choices.append((name, run["gemm_choices"]))  # the first run per world: they share the shapes
        self.rows.append(tuple(cells))
        print("   " + " | ".join(cells), flush=True)

    def _check(self, world: int, mode: str, check: dict | None) -> str:
        """Greedy tokens and first-row logits against TP=1 in the same mode, and async
        against sync in the same run."""
        if check is None:
            return "—"
        cells = []
        sync = self._checks.get((world, "sync"))
        if mode == "async" and sync is not None:
            cells.append(f"vs sync: {_compare(check, sync)}")
        self._checks[(world, mode)] = check
        ref = self._checks.get((1, mode))
        if world > 1:
            cells.append(f"vs TP=1: {_compare(check, ref)}" if ref is not None else "no TP=1 reference")
        return "; ".join(cells) or "reference"

    def _same_decode(self, world: int, variant: str | None, mode: str, run: dict) -> str:
        """Async decode (nothing waits for a step) against sync: greedy tokens of the timed
        runs, over the length both produced."""
        key = (world, variant)
        if mode == "sync":
            self._decodes[key] = run["decode"]
            return ""
        sync = self._decodes.get(key)
        if mode != "async" or sync is None:
            return ""
        same = total = 0
        for batch, d in run["decode"].items():
            for a, b in zip(d.get("tokens", []), sync.get(batch, {}).get("tokens", [])):
                n = min(len(a), len(b))
                same, total = same + (a[:n] == b[:n]), total + 1
        return f"; timed decode: {same}/{total} sequences as sync"

    def _profile_rows(self, name: str, batch: int, profile: list[dict]) -> None:
        for rank, p in enumerate(profile):
            if not p:
                continue
            wall = p["wall"]
            parts = [f"{p[k]:.3f} ({100 * p[k] / wall:.0f}%)" for k in ("gemm", "attention", "all_reduce", "other")]
            idle = "n/a (CPU)" if not math.isfinite(p["idle"]) else f"{p['idle']:.3f} ({100 * p['idle'] / wall:.0f}%)"
            self.profiles.append((f"{name} b{batch}", f"rank {rank}", f"{wall:.3f}", *parts, idle, f"{p['kernels']:.0f}"))
            if batch == 1 and rank == 0 and p.get("top"):
                self.kernels.append((f"{name} b{batch}", p["top"]))

    # -- 40B Loop --------------------------------------------------------------------------
    def loop(self, config: ModelConfig, res: dict) -> None:
        self.data["loop"] = _jsonable(res)
        bw = res["bandwidth"]
        b1 = res["batch1"]
        roof = roofline(config, 2, bw, 1, self.args.context, self.itemsize)
        pct = f" ({100 * b1['tok_s'] / roof:.0f}% of {roof:.0f})" if math.isfinite(roof) else ""
        tokens = res["blocks"] * res["block_size"]
        if "batch1_sync" in res:
            s1 = res["batch1_sync"]
            self.loop_rows.append(("batch 1, 2K context, sync scheduling", f"{s1['tok_s']:.1f} tok/s",
                                   f"{s1['step_ms']:.1f} ms/step", ""))
        self.loop_rows.append(("batch 1, 2K context, async scheduling", f"{b1['tok_s']:.1f} tok/s{pct}", f"{b1['step_ms']:.1f} ms/step",
                               f"all-reduce {res['all_reduce']}, {'graphs' if res['graphs'] else 'eager'}, "
                               f"pool {tokens} tokens per GPU ({res['pool'] or 'fixed'})"))
        self._profile_rows("40B-Loop TP=2", 1, b1["profile"])
        print(f"   {self.loop_rows[-1]}; shared prompt of {res['base_tokens']} tokens prefilled in "
              f"{res['base_prefill_s']:.1f} s", flush=True)
        if res.get("base_done"):
            self.loop_rows.append((f"prefill of the shared {res['base_tokens']}-token prompt (cold, one request)",
                                   f"{res['base_tokens'] / res['base_prefill_s']:.0f} prompt tok/s",
                                   f"{res['base_prefill_s']:.1f} s", ""))
        for level, d in res["levels"].items():
            if "skipped" in d:
                self.loop_rows.append((f"decode, {level} concurrent", d["skipped"], "", ""))
                continue
            ar = ", ".join(f"r{r} {p['all_reduce']:.2f} ms ({100 * p['all_reduce'] / p['wall']:.0f}%), "
                           f"attention {p['attention']:.1f} ms" for r, p in enumerate(d.get("profile") or []) if p)
            extra = (f"; tokens per step {d.get('step_tokens')}, {d.get('steps_with_prefill')} steps with a prefill, graph batch "
                     f"{d.get('graph_batch')}, {d.get('attention_splits')} splits, longest {d.get('max_context', 0) / 1024:.1f}K")
            self.loop_rows.append((f"decode, {level} concurrent, mean context {d['mean_context'] / 1024:.1f}K",
                                   f"{d['tok_s']:.0f} tok/s", f"P50 {d['p50_ms']:.1f} / P95 {d['p95_ms']:.1f} ms per output token"
                                   + (f"; all-reduce {ar}" if ar else "") + extra,
                                   REPORT_4XA100))
            self._profile_rows(f"40B-Loop TP=2 {level} concurrent", level, d.get("profile") or [])
            print("   " + " | ".join(self.loop_rows[-1][:3]), flush=True)
        cold = res.get("cold")
        if cold:
            latency = (f"P50 {cold['p50_ms']:.1f} / P95 {cold['p95_ms']:.1f} ms per output token"
                       if cold["p50_ms"] is not None else "no request finished")
            ttft = f", TTFT P50 {cold['ttft_p50_s']:.1f} s" if cold["ttft_p50_s"] is not None else ""
            self.loop_rows.append((f"cold load, {cold['level']} concurrent ({cold['seconds']:.0f} s: {cold['finished']} of "
                                   f"{cold['started']} requests finished, {cold['failed']} failed)",
                                   f"{cold['tok_s']:.0f} output tok/s", latency + ttft, REPORT_4XA100))
            print("   " + " | ".join(self.loop_rows[-1][:3]), flush=True)

    # -- output ----------------------------------------------------------------------------
    def table(self) -> str:
        lines = ["", "| 14B shape, scheduling | batch 1 tok/s (% of roofline, × TP=1 same mode, × sync) | 32 sequences "
                 "tok/s | all-reduce ms/step at batch 1 (share of the step) | all-reduce µs/call (56 in one graph) | "
                 "greedy check | decode |",
                 "|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", "| 40B-Loop shape, TP=2 | tok/s | latency | beside |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.loop_rows]
        lines += ["", "Per-rank step profile, ms per step (share of the step): GEMM, attention, all-reduce "
                  "(incl. waiting for the other rank), other kernels, GPU idle (host: scheduling, step message, "
                  "launch, token read-back)", "",
                  "| run | rank | step ms | GEMM | attention | all-reduce | other | GPU idle | kernels/step |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.profiles]
        for run, top in self.kernels:
            lines += ["", f"Top kernels of {run}, rank 0 (calls and ms per step):"]
            lines += [f"  {ms:7.3f} ms {calls:5.0f}x {cat:10s} {name[:100]}" for name, cat, calls, ms in top[:12]]
        if self.gemms:
            lines += ["", "GEMM probe (one GPU, bf16, 28 calls in one CUDA graph): µs per call, GB/s of weights read",
                      "", "| shape (out x in) | rows | " + " | ".join(self.gemms[0]["us"]) + " |",
                      "|---|---|" + "---|" * len(self.gemms[0]["us"])]
            lines += [f"| {g['out']} x {g['in']} | {g['rows']} | " + " | ".join(
                f"{us:.1f} µs, {g['bytes'] / us / 1e3:.0f} GB/s" for us in g["us"].values()) + " |" for g in self.gemms]
        for run, ranks in self.choices:
            others = sum(a["choice"] != b["choice"] for rows in ranks[1:] for a, b in zip(rows, ranks[0]))
            lines += ["", f"Decode GEMMs of {run}, rank 0: cuBLAS (gated: over gate and up side by side where "
                      f"placed so, + SiLU x up), cuBLASLt (plain products) and the best Triton config (µs, cold L2), "
                      f"what runs (other ranks chose differently for {others} shapes; all in the JSON)",
                      "", "| kind | rows | N x K | cuBLAS µs | cuBLASLt µs | Triton µs | runs |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {c['kind']} | {c['rows']} | {c['n']} x {c['k']} | {c['cublas_us']:.1f} | "
                      f"{_us(c.get('cublaslt_us'))} | {c['triton_us']:.1f} | {c['choice']} |" for c in ranks[0]]
        lines += ["", "Sections: " + "; ".join(f"{k}: {v}" for k, v in self.status.items())]
        if self.tests:
            lines += [f"GPU tests: pytest exit {self.tests['returncode']}: {self.tests['tail'][-1] if self.tests['tail'] else ''}"]
        return "\n".join(lines)

    def save(self) -> None:
        if self.path is None:
            return
        self.data.update(status=self.status, tests=self.tests, rows=self.rows, loop_rows=self.loop_rows,
                         profiles=self.profiles, gemms=self.gemms,
                         gemm_choices=self.choices)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _compare(check: dict, ref: dict) -> str:
    same = sum(a == b for a, b in zip(check["tokens"], ref["tokens"]))
    # Stop ids a row may not sample yet are -inf in both: compare the finite logits.
    diff = max((a - b)[a.isfinite() & b.isfinite()].abs().max().item() for a, b in zip(check["logits"], ref["logits"]))
    return f"{same}/{len(ref['tokens'])} same tokens, max|Δlogit| {diff:.3f}"


def _jsonable(value):
    """Results without the logits tensors (summarised by the check column)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "logits"}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value
