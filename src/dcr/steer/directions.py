"""Extraction data and last-prompt-token activations; mean-difference directions.

Layer convention (shared with ``dcr refine``): "layer l" is the output of decoder block ``l`` (0-based). The
activation of a prompt is the residual stream at its last token (the post-instruction position: the template's
assistant header ends there), the position from which the first answer token is predicted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dcr.data import load_alpaca_instructions, load_hh_harmful, load_refusal_pairs, xstest_split
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers
from dcr.prompts import adds_special_tokens, format_prompt


@dataclass
class PromptSet:
    """A named set of extraction prompts with the ids that were used (recorded in steer.json)."""

    name: str
    ids: list[str]
    prompts: list[str]


def _sample(name: str, records: Sequence[Any], n: int, seed: int) -> PromptSet:
    if len(records) < n:
        picked = list(records)
    else:
        keep = sorted(random.Random(f"{seed}:{name}").sample(range(len(records)), n))
        picked = [records[i] for i in keep]
    return PromptSet(name, [r.id for r in picked], [r.prompt for r in picked])


def load_sets(cfg: Any, with_seemingly: bool) -> dict[str, PromptSet]:
    """harmful / harmless (/ seemingly toxic: XSTest safe, in-distribution part only), ``n_directions`` each."""
    root = cfg.data_dir
    harmful = load_refusal_pairs(root) if cfg.harmful_source == "stl" else load_hh_harmful(root)
    sets = {
        "harmful": _sample("harmful", harmful, cfg.n_directions, cfg.seed),
        "harmless": _sample("harmless", load_alpaca_instructions(root), cfg.n_directions, cfg.seed),
    }
    if with_seemingly:
        in_dist, _held_out = xstest_split(cfg.xstest_heldout_frac, cfg.split_seed, root)
        sets["seemingly_toxic"] = _sample("seemingly_toxic", in_dist, cfg.n_directions, cfg.seed)
    return sets


def encode(tok: Any, prompts: Sequence[str], template: str, max_length: int = 256) -> dict[str, torch.Tensor]:
    """Chat-formatted, left-padded, left-truncated ids with position ids as ``generate`` builds them."""
    texts = [format_prompt(tok, p, template) for p in prompts]
    tok.padding_side = "left"
    tok.truncation_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
              add_special_tokens=adds_special_tokens(tok, template))
    mask = enc["attention_mask"]
    return {"input_ids": enc["input_ids"], "attention_mask": mask,
            "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position of each row (works for left and right padding)."""
    flipped = mask.flip(-1).long().argmax(-1)
    return mask.shape[-1] - 1 - flipped


class _Stop(Exception):
    """Ends a forward after the last block that is needed."""


@torch.no_grad()
def capture_last(model: Any, inputs: dict[str, torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """Block outputs at each row's last attended token: ``[len(layers), B, d]`` fp32 (forward stops early)."""
    blocks = get_layers(model)
    rows = torch.arange(inputs["input_ids"].shape[0])
    idx = last_index(inputs["attention_mask"]).to(rows.device)
    stop_at = max(layers)
    got: dict[int, torch.Tensor] = {}

    def make(i: int) -> Any:
        def fn(_m: Any, _a: Any, out: Any) -> None:
            h = hidden_of(out)
            got[i] = h[rows.to(h.device), idx.to(h.device)].float().cpu()
            if i == stop_at:
                raise _Stop

        return fn

    uniq = sorted(set(layers))
    dev = next(model.parameters()).device
    with hooks([blocks[i] for i in uniq], [make(i) for i in uniq]):
        try:
            model(**{k: v.to(dev) for k, v in inputs.items()}, use_cache=False)
        except _Stop:
            pass
    return torch.stack([got[i] for i in layers])


def prompt_states(model: Any, tok: Any, prompts: Sequence[str], layers: Sequence[int], template: str = "auto",
                  batch_size: int = 16, max_length: int = 256) -> torch.Tensor:
    """Last-prompt-token block outputs for ``prompts``: ``[len(layers), N, d]`` fp32."""
    out = []
    for start in range(0, len(prompts), batch_size):
        enc = encode(tok, prompts[start:start + batch_size], template, max_length)
        out.append(capture_last(model, enc, layers))
    return torch.cat(out, dim=1)


def mean_diff(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``mean(pos) - mean(neg)`` over the prompt axis (``[..., N, d]`` -> ``[..., d]``)."""
    return pos.mean(dim=-2) - neg.mean(dim=-2)


def unit(v: torch.Tensor) -> torch.Tensor:
    """``v / |v|`` along the last axis; a zero vector is an error (the two sets gave identical means)."""
    norm = v.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("a direction has zero norm: the two prompt sets have identical mean activations")
    return v / norm


def orthogonalize(v: torch.Tensor, against: torch.Tensor) -> torch.Tensor:
    """``v - (v . a_hat) a_hat``: the part of ``v`` orthogonal to ``against``."""
    a = unit(against)
    return v - (v * a).sum(-1, keepdim=True) * a


def separation(pos: torch.Tensor, neg: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Per layer, |difference of mean projections| / pooled std of projections on the unit ``direction``."""
    d = unit(direction).unsqueeze(-2)
    p, n = (pos * d).sum(-1), (neg * d).sum(-1)
    pooled = ((p.var(-1) + n.var(-1)) / 2).clamp_min(1e-12).sqrt()
    return (p.mean(-1) - n.mean(-1)).abs() / pooled
