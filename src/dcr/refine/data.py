"""Refinement data: seemingly toxic (XSTest safe, in-distribution part) vs toxic (HH-RLHF) prompts, held-out
evaluation sets, and a balanced batch sampler so that every batch holds both classes.

With ``xstest_heldout_frac=0`` (the paper) every XSTest safe prompt is trained on: there are no held-out
prompts and no held-out evaluation sets, only the training-fit reference (``NO_HELDOUT`` says so in split.json).

Labels: 0 = seemingly toxic, 1 = toxic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from dcr.data import PromptRecord, load_benchmark, load_hh_harmful, xstest_split
from dcr.errors import ConfigError, DataError

SEEMINGLY, TOXIC = 0, 1
NO_HELDOUT = ("xstest_heldout_frac=0: every XSTest safe prompt is trained on (in-distribution); no held-out "
              "separability is measured, only the training-fit reference (train)")


@dataclass
class RefineData:
    """Training prompts of both classes and the held-out evaluation sets."""

    seemingly: list[PromptRecord]
    toxic: list[PromptRecord]
    heldout: list[PromptRecord]
    eval_toxic: dict[str, list[PromptRecord]]

    def train_items(self) -> tuple[list[str], list[int]]:
        """Training prompts and labels, seemingly toxic first."""
        prompts = [r.prompt for r in self.seemingly] + [r.prompt for r in self.toxic]
        return prompts, [SEEMINGLY] * len(self.seemingly) + [TOXIC] * len(self.toxic)

    def split_json(self) -> dict[str, Any]:
        """The ``OUT/split.json`` content (align excludes ``toxic_prompts`` from its SFT data)."""
        return {
            "heldout_ids": [r.id for r in self.heldout],
            "train_seemingly_ids": [r.id for r in self.seemingly],
            "toxic_ids": [r.id for r in self.toxic],
            "toxic_prompts": [r.prompt for r in self.toxic],
            "eval_toxic_ids": {name: [r.id for r in recs] for name, recs in self.eval_toxic.items()},
            **({} if self.heldout else {"note": NO_HELDOUT}),
        }


def sample_toxic(hh: list[PromptRecord], n_train: int, n_eval: int, seed: int) -> tuple[list, list]:
    """Disjoint (train, eval) samples of HH-RLHF prompts: train from the front of a seeded shuffle, eval from
    its back, so the eval set does not depend on ``n_train``."""
    if n_train + n_eval > len(hh):
        raise DataError("hh-rlhf/harmless-base-test.jsonl.gz", f"{len(hh)} unique prompts, but {n_train} for "
                        f"training plus {n_eval} held out were asked for", "lower toxic_ratio or limit")
    order = list(hh)
    random.Random(seed).shuffle(order)
    return order[:n_train], order[len(order) - n_eval:]


def build_data(
    data_dir: str | None, heldout_frac: float, split_seed: int, seed: int, toxic_ratio: float,
    limit: int | None, eval_toxic: str,
) -> RefineData:
    """Assemble the training and evaluation prompts (see RefineConfig for the meaning of each argument)."""
    in_dist, heldout = xstest_split(heldout_frac, split_seed, data_dir)
    if heldout_frac > 0 and len(heldout) < 2:
        raise ConfigError(f"xstest_heldout_frac={heldout_frac} holds out {len(heldout)} XSTest safe prompt(s); the "
                          "held-out separability metrics need at least 2. Fix: raise xstest_heldout_frac (e.g. 0.2), "
                          "or set it to 0 to hold out nothing")
    rng = random.Random(seed)
    seemingly = list(in_dist)
    if limit is not None and len(seemingly) > limit:
        seemingly = sorted(rng.sample(seemingly, limit), key=in_dist.index)
    n_toxic = max(2, round(toxic_ratio * len(seemingly)))
    if limit is not None:
        n_toxic = min(n_toxic, limit)
    evals: dict[str, list[PromptRecord]] = {}
    hh = load_hh_harmful(data_dir)
    toxic, hh_eval = sample_toxic(hh, n_toxic, len(heldout), seed)
    if not heldout:  # nothing held out: no held-out evaluation sets
        return RefineData(seemingly, toxic, heldout, evals)
    if eval_toxic in ("hh", "both"):
        evals["hh"] = hh_eval
    if eval_toxic in ("xstest-unsafe", "both"):
        unsafe = load_benchmark("xstest-unsafe", data_dir)
        evals["xstest-unsafe"] = random.Random(seed).sample(unsafe, min(len(heldout), len(unsafe)))
    return RefineData(seemingly, toxic, heldout, evals)


def batch_counts(batch_size: int, seemingly_frac: float, n_seemingly: int, n_toxic: int) -> tuple[int, int]:
    """Prompts per batch from each class: at least 2 of each (so every anchor has a positive), capped by the
    class sizes."""
    k0 = min(max(round(batch_size * seemingly_frac), 2), batch_size - 2)
    return min(k0, n_seemingly), min(batch_size - k0, n_toxic)


def balanced_batches(
    labels: list[int], batch_size: int, seemingly_frac: float, num_batches: int, seed: int
) -> list[list[int]]:
    """``num_batches`` batches of indices into ``labels``, each with both classes in fixed proportion.

    Each class is drawn without replacement from a seeded shuffle of its indices and reshuffled when used up,
    so within a class every prompt is seen equally often (up to one pass).
    """
    pools = {c: [i for i, y in enumerate(labels) if y == c] for c in (SEEMINGLY, TOXIC)}
    if any(len(p) < 2 for p in pools.values()):
        raise ValueError(f"need at least 2 prompts per class, got {[len(p) for p in pools.values()]}")
    k0, k1 = batch_counts(batch_size, seemingly_frac, len(pools[SEEMINGLY]), len(pools[TOXIC]))
    rng = random.Random(seed)
    queues: dict[int, list[int]] = {c: [] for c in pools}

    def take(c: int, k: int) -> list[int]:
        got: list[int] = []
        while len(got) < k:
            if not queues[c]:
                fresh = rng.sample(pools[c], len(pools[c]))
                # a reshuffle mid-batch: put prompts already in this batch last in line (pop takes the end)
                queues[c] = [i for i in fresh if i in got] + [i for i in fresh if i not in got]
            got.append(queues[c].pop())
        return got

    return [take(SEEMINGLY, k0) + take(TOXIC, k1) for _ in range(num_batches)]


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    """Batches per epoch: enough to show ``n_items`` prompts once on average."""
    return max(1, math.ceil(n_items / batch_size))
