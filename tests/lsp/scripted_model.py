"""A real checkpoint (Hugging Face layout, made with `create_tiny`) whose weights make it write
a chosen text after any prompt: for end-to-end tests of what post-processing and the secret
filter do with known model output.

The decoder layers are silenced (`o_proj` and `down_proj` are zero, so the residual stream
is the token's embedding) and the output head is set so that each token of the script
predicts the next: a bigram model that, greedily, spells the script after `<|fim_middle|>`
(the last token of every completion prompt) and then writes `</s>`, or starts the script
again when it is a cycle. The script's tokens must be distinct (apart from the cycle), which
`create_scripted` checks. With an `alternative`, the first token of that text is the start's
second most likely token (`ALTERNATIVE_MARGIN` below the script's: about 38% likely), and
greedily, from there, it spells the alternative and writes `</s>`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from loopls.engine.model.tiny import create_tiny

GAIN = 20.0  # logit of the scripted next token; everything else is about 0
ALTERNATIVE_MARGIN = 0.5  # the alternative's first token: its logit below the script's first


def create_scripted(folder: Path, script: str, cycle: bool = False, seed: int = 0,
                    after: str = "<|fim_middle|>", layers: int | None = None, alternative: str | None = None) -> Path:
    """`after`: the text of the prompt's last token, where the script starts. `layers`:
    more (silent) decoder layers make each token take longer to write. `alternative`: the
    text of the start's second most likely first token (its tokens distinct from the
    script's)."""
    create_tiny(folder, arch="llama", seed=seed, overrides={"num_hidden_layers": layers} if layers else None)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tok.encode(script).ids
    assert len(set(ids)) == len(ids), f"the script's tokens repeat: {[tok.id_to_token(i) for i in ids]}"
    assert tok.decode(ids) == script, "the script does not survive tokenization"
    start, end = tok.encode(after).ids[-1], tok.token_to_id("</s>")
    assert start not in ids, "the script must not contain its start token"
    chain = [start, *ids, ids[0] if cycle else end]
    links = [(current, following, GAIN) for current, following in zip(chain, chain[1:])]
    if alternative is not None:
        other = tok.encode(alternative).ids
        assert len(set(other)) == len(other) and not set(other) & set(chain), "the alternative's tokens repeat"
        assert tok.decode(other) == alternative, "the alternative does not survive tokenization"
        second = [start, *other, end]
        links += [(current, following, GAIN - ALTERNATIVE_MARGIN if current == start else GAIN)
                  for current, following in zip(second, second[1:])]
    weights = load_file(str(folder / "model.safetensors"))
    hidden = weights["model.embed_tokens.weight"].shape[1]
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(weights["model.embed_tokens.weight"].shape, generator=gen)
    embed = embed / embed.norm(dim=1, keepdim=True) * hidden ** 0.5  # RMS 1: the final norm keeps it
    head = torch.zeros_like(weights["lm_head.weight"])
    for current, following, gain in links:
        head[following] += gain * embed[current] / hidden
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = head
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = torch.zeros_like(weights[name])
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["loopls_untrained"] = False  # not noise: it writes what it was made to write
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
