"""The confound diagnostic (issue 29): does refinement separate harm, or which dataset a prompt comes from?

Measured at refine's layer, before and after training, on prompts refine does not train on:

- **class within one source**: a linear probe's cross-validated accuracy on seemingly toxic vs toxic inside one
  family whose two sides match in style: XSTest safe vs unsafe (held-out splits), CoCoNot contrast set vs the
  original set's safety-concern requests, physical safety safe vs unsafe. Chance 0.5. This is what refinement
  should raise if it learns harm.
- **source within one class**: the probe's accuracy on the family a prompt comes from, among the seemingly toxic
  prompts (XSTest, CoCoNot, physical safety) and among the toxic ones (the same three and HH-RLHF). Chance 1/k.
  A refinement that learns data source raises this one instead.

Each side is a seeded sample of up to ``n`` prompts without any training prompt (by normalised text); a family
with fewer than 4 prompts left on a side is reported as not measurable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

from dcr.data import PromptRecord, load_benchmark, xstest_split
from dcr.refine.data import RefineData, sample_toxic
from dcr.refine.metrics import probe_accuracy
from dcr.refine.sources import SOURCES

MIN_SIDE = 4
Features = Callable[[list[str]], torch.Tensor]


def _family_sets(root: str | None, frac: float, split_seed: int, seed: int) -> dict[str, dict[str, list]]:
    """Candidate prompts per family and side (before training prompts are removed)."""
    part = 1 if frac else 0  # nothing held out: the whole sets (the rows refine trains on are left out below)
    held_safe = xstest_split(frac, split_seed, root)[part]
    held_unsafe = xstest_split(frac, split_seed, root, label="unsafe")[part]
    original = SOURCES["coconot-original"].load(root, frac, split_seed)
    return {
        "xstest": {"seemingly": held_safe, "toxic": held_unsafe},
        "coconot": {"seemingly": load_benchmark("coconot", root), "toxic": original},
        "physical-safety": {"seemingly": load_benchmark("physical-safety-safe", root),
                            "toxic": load_benchmark("physical-safety-unsafe", root)},
        "hh-rlhf": {"toxic": sample_toxic(SOURCES["hh-rlhf"].load(root, frac, split_seed), 0, 400, seed + 1)[1]},
    }


def confound_sets(data: RefineData, root: str | None, frac: float, split_seed: int, n: int,
                  seed: int) -> dict[str, dict[str, list[PromptRecord]]]:
    """``{family: {side: records}}``: up to ``n`` seeded prompts per side, none of them a training prompt."""
    from dcr.align.data import normalize_prompt

    trained = {normalize_prompt(r.prompt) for r in (*data.seemingly, *data.toxic)}
    rng = random.Random(seed)
    out: dict[str, dict[str, list[PromptRecord]]] = {}
    for family, sides in _family_sets(root, frac, split_seed, seed).items():
        out[family] = {}
        for side, records in sides.items():
            free = [r for r in records if normalize_prompt(r.prompt) not in trained]
            out[family][side] = rng.sample(free, min(n, len(free)))
    return out


def confound_scores(sets: dict[str, dict[str, list[PromptRecord]]], feats: Features,
                    seed: int) -> dict[str, Any]:
    """Probe accuracies of :func:`confound_sets` from one model's features (``feats``: prompts -> ``[N, d]``)."""
    prompts = sorted({r.prompt for sides in sets.values() for recs in sides.values() for r in recs})
    index = {p: i for i, p in enumerate(prompts)}
    x = feats(prompts) if prompts else torch.empty(0)

    def probe(groups: list[list[PromptRecord]]) -> dict[str, Any]:
        k = min(len(g) for g in groups)
        if k < MIN_SIDE:
            return {"probe_accuracy": None, "n": [len(g) for g in groups], "note": f"fewer than {MIN_SIDE} "
                    "prompts on a side that refine does not train on: not measurable"}
        rows = [r for g in groups for r in g[:k]]  # equal sides: chance is 1 / len(groups)
        y = torch.tensor([j for j, g in enumerate(groups) for _ in g[:k]])
        acc = probe_accuracy(x[[index[r.prompt] for r in rows]], y, seed)
        return {"probe_accuracy": round(acc, 4), "chance": round(1 / len(groups), 4), "n": [k] * len(groups)}

    within = {f: probe([s["seemingly"], s["toxic"]]) for f, s in sets.items() if "seemingly" in s}
    across = {}
    for side in ("seemingly", "toxic"):
        families = [f for f, s in sets.items() if side in s]
        across[side] = {"families": families, **probe([sets[f][side] for f in families])}
    return {"class_within_source": within, "source_within_class": across}


def score_records(scores: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``results.jsonl`` fields of each measured probe in :func:`confound_scores`' output (a probe that was
    not measurable has no record)."""
    for metric, groups in scores.items():
        for group, row in groups.items():
            if row.get("probe_accuracy") is not None:
                yield {"benchmark": f"confound-{group}", "split": "never-trained", "metric": f"probe_{metric}",
                       "value": row["probe_accuracy"], "n": sum(row["n"]), "chance": row["chance"]}
