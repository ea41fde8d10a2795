"""One command from source files to a checkpoint folder: corpus -> tokenizer -> samples ->
training -> export. Every stage logs one JSON line (with its duration) to the given stream."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from loopls.engine.model.loader import load_checkpoint
from loopls.engine.model.transformer import CausalLM
from loopls.engine.model.tokenizer import Tokenizer

from . import manifest as manifest_mod
from .bpe import eos_ids, special_ids, train_tokenizer, write_tokenizer
from .corpus import Counts, SourceFile, gather, local_distributions
from .dedup import deduplicate
from .export import save_weights, write_config, write_json
from .recipe import MODEL_NAME, Recipe
from .samples import SampleBuilder
from .snapshot import read_snapshot
from .trainer import init_weights, phases, train


def build_corpus(recipe: Recipe, seed: int, workers: int, machine: str, snapshots: list[Path],
                 scratch: Path, log: Callable[[dict], None]):
    """Both machines' accepted files, deduplicated; and the manifest rows."""
    t = time.perf_counter()
    dists = local_distributions(machine)
    carried: dict[int, Counts] = {}
    for i, snap in enumerate(snapshots):
        more, rows = read_snapshot(snap, scratch / f"snapshot{i}")
        carried.update({len(dists) + j: row for j, row in enumerate(rows)})
        dists.extend(more)
    files: list[SourceFile] = []
    sigs, rows, machines = [], [], []
    for i, (got, counts, sg) in enumerate(gather(dists, recipe.package_cap_bytes, recipe.stdlib_cap_bytes, seed, workers)):
        # A carried package keeps the row recorded where it was selected (with its drop reasons).
        rows.append(carried.get(i, counts))
        files.extend(got)
        sigs.extend(sg)
        machines.extend([dists[i].machine] * len(got))
    order = sorted(range(len(files)), key=lambda k: (files[k].package.lower(), files[k].path, machines[k]))
    result = deduplicate([files[k] for k in order], [sigs[k] for k in order])
    log({"stage": "corpus", "seconds": round(time.perf_counter() - t, 1), "distributions": len(dists),
         "files": len(files), "kept": len(result.kept), "bytes": sum(len(f.text) for f in result.kept),
         "exact_dups": sum(result.exact.values()), "near_dups": sum(result.near.values())})
    return result, rows


def tokenizer_sample(files: list[SourceFile], limit: int, seed: int) -> list[str]:
    """A fixed pseudo-random selection of files, `limit` bytes in all, for BPE training."""
    chosen, size = [], 0
    for f in sorted(files, key=lambda f: hashlib.sha1(f"{seed}:{f.repo}:{f.path}".encode()).hexdigest()):
        if size >= limit:
            break
        chosen.append(f.text)
        size += len(f.text)
    return chosen


def run(out: Path, recipe: Recipe, seed: int, workers: int, machine: str, snapshots: list[Path],
        device: str, log: Callable[[dict], None], steps: tuple[int, ...] | None = None,
        deadline: float | None = None, phase_names: tuple[str, ...] = ("short", "long", "fim"),
        init: Path | None = None) -> dict:
    """The whole pipeline into `out`; with `init`, continue that checkpoint (its tokenizer and
    weights) instead of training a tokenizer and starting from random weights."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="loopls-train-") as scratch:
        result, rows = build_corpus(recipe, seed, workers, machine, snapshots, Path(scratch), log)
    data_manifest = manifest_mod.build(rows, result, MODEL_NAME, seed)
    write_json(out / "manifest.json", data_manifest)

    t = time.perf_counter()
    if init is None:
        tok = train_tokenizer(tokenizer_sample(result.kept, recipe.tokenizer_sample_bytes, seed), recipe.vocab_size)
        ids = special_ids(tok)
        config = recipe.model_config(eos_ids(tok), ids["<s>"])
        if tok.get_vocab_size() != config.vocab_size:  # a small corpus may not fill the vocabulary
            config = replace(config, vocab_size=tok.get_vocab_size())
        write_tokenizer(tok, out, config)
        model = CausalLM(config)
        init_weights(model, seed)
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(init / name, out / name)
        model = load_checkpoint(init, dtype="float32").model.requires_grad_(True)
    declare_layout(out, recipe.fim_layout)
    tokenizer = Tokenizer.from_folder(out)
    log({"stage": "tokenizer", "seconds": round(time.perf_counter() - t, 1), "vocab": tokenizer.vocab_size,
         "from": str(init) if init else "trained"})

    builder = SampleBuilder(result.kept, tokenizer, seed=seed)
    target = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(target).train()
    params = sum(p.numel() for p in model.parameters())
    log({"stage": "model", "parameters": params, "device": str(target),
         "gpu": torch.cuda.get_device_name(target) if target.type == "cuda" else None, "torch": torch.__version__,
         "recipe": asdict(recipe)})

    def export(summary) -> None:
        t = time.perf_counter()
        weights = save_weights(model, out)
        training = {"seed": seed, "phases": list(phase_names), "init": str(init) if init else None,
                    "steps": summary.steps, "tokens": summary.tokens, "fresh_tokens": summary.fresh_tokens,
                    "reuse": recipe.reuse,
                    "train_seconds": round(summary.seconds, 1), "tokens_per_second": round(summary.tokens_per_second),
                    "last_loss": round(summary.last_loss, 4), "device": str(target),
                    "total_seconds": round(time.perf_counter() - t0, 1)}
        write_config(model, out, {"loopls_model": MODEL_NAME, "loopls_training": training})
        log({"stage": "export", "seconds": round(time.perf_counter() - t, 1), "files": weights, **training})

    plan = phases(recipe, phase_names)
    summary = train(model, builder, recipe, target, workers, log, plan, steps, deadline, after_phase=export)
    return asdict(summary)


def declare_layout(out: Path, layout: str) -> None:
    """The checkpoint's FIM layout in its tokenizer_config.json, where the server reads it."""
    path = out / "tokenizer_config.json"
    write_json(path, json.loads(path.read_text()) | {"loopls_fim_layout": layout})


def describe(out: Path) -> str:
    """A one-line summary of an exported folder (for the command's last line)."""
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir())
    config = json.loads((out / "config.json").read_text())
    return f"{out}: {len(files)} files, {size / 1e6:.1f} MB, steps {config['loopls_training']['steps']}"
