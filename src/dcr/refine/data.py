"""Refinement data: seemingly toxic (XSTest safe, in-distribution part) vs toxic (HH-RLHF) prompts, held-out
evaluation sets, and a balanced batch sampler so that every batch holds both classes.

With ``xstest_heldout_frac=0`` (the paper) every XSTest safe prompt is trained on: there are no held-out
prompts and no held-out evaluation sets, only the training-fit reference (``NO_HELDOUT`` says so in split.json).

Labels: 0 = seemingly toxic, 1 = toxic.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any

from dcr.data import PromptRecord, load_benchmark, load_hh_harmful, xstest_split
from dcr.errors import ConfigError, DataError
from dcr.refine.sources import PAPER_SOURCES, SEEMINGLY, SOURCES, TOXIC, quotas

log = logging.getLogger("dcr.refine")
NO_HELDOUT = ("xstest_heldout_frac=0: every XSTest safe prompt is trained on (in-distribution); no held-out "
              "separability is measured, only the training-fit reference (train)")


@dataclass
class RefineData:
    """Training prompts of both classes and the held-out evaluation sets."""

    seemingly: list[PromptRecord]
    toxic: list[PromptRecord]
    heldout: list[PromptRecord]
    eval_toxic: dict[str, list[PromptRecord]]
    # per training prompt (seemingly first), the refine source it came from; None = the paper's two sources
    item_sources: list[str] | None = None
    sources: dict[str, dict[str, Any]] | None = None  # per source: class, family, n, dropped overlap ids
    evaluation_overlap: dict[str, list[str]] | None = None  # paper's path: training ids also in evaluation sets

    def train_items(self) -> tuple[list[str], list[int]]:
        """Training prompts and labels, seemingly toxic first."""
        prompts = [r.prompt for r in self.seemingly] + [r.prompt for r in self.toxic]
        return prompts, [SEEMINGLY] * len(self.seemingly) + [TOXIC] * len(self.toxic)

    def train_sources(self) -> list[str]:
        """The source of each training prompt, in :meth:`train_items` order."""
        if self.item_sources is not None:
            return list(self.item_sources)
        return [PAPER_SOURCES[SEEMINGLY]] * len(self.seemingly) + [PAPER_SOURCES[TOXIC]] * len(self.toxic)

    def families(self) -> list[str]:
        """The benchmark families refine trained on (their evaluation columns are in-distribution style)."""
        names = set(self.train_sources())
        return sorted({SOURCES[n].family for n in names})

    def split_json(self) -> dict[str, Any]:
        """The ``OUT/split.json`` content (align excludes ``toxic_prompts`` from its SFT data)."""
        return {
            "heldout_ids": [r.id for r in self.heldout],
            "train_seemingly_ids": [r.id for r in self.seemingly],
            "toxic_ids": [r.id for r in self.toxic],
            "toxic_prompts": [r.prompt for r in self.toxic],
            "eval_toxic_ids": {name: [r.id for r in recs] for name, recs in self.eval_toxic.items()},
            "families": self.families(),
            **({"sources": self.sources} if self.sources is not None else {}),
            **({"evaluation_overlap": self.evaluation_overlap} if self.evaluation_overlap is not None else {}),
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
    _check_heldout(heldout_frac, heldout)
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
    shared = paper_overlap(data_dir, seemingly, toxic)
    if not heldout:  # nothing held out: no held-out evaluation sets
        return RefineData(seemingly, toxic, heldout, evals, evaluation_overlap=shared)
    if eval_toxic in ("hh", "both"):
        evals["hh"] = hh_eval
    if eval_toxic in ("xstest-unsafe", "both"):
        unsafe = load_benchmark("xstest-unsafe", data_dir)
        evals["xstest-unsafe"] = random.Random(seed).sample(unsafe, min(len(heldout), len(unsafe)))
    return RefineData(seemingly, toxic, heldout, evals, evaluation_overlap=shared)


def paper_overlap(data_dir: str | None, seemingly: list[PromptRecord],
                  toxic: list[PromptRecord]) -> dict[str, list[str]]:
    """The paper's training prompts that an evaluation benchmark also holds (HH-RLHF shares 15 prompts with
    HarmfulQ): logged and recorded in split.json, not removed, so the paper's data stays as it was."""
    from dcr.refine.sources import evaluation_prompts, overlap

    evals = evaluation_prompts(data_dir)
    shared = {**overlap(SOURCES[PAPER_SOURCES[SEEMINGLY]], seemingly, evals),
              **overlap(SOURCES[PAPER_SOURCES[TOXIC]], toxic, evals)}
    if shared:
        log.warning("refine: %d training prompt(s) are also in evaluation sets (%s); those sets' rows are not "
                    "never-trained for DCR (split.json evaluation_overlap)", len(shared),
                    ", ".join(sorted({b for hits in shared.values() for b in hits})))
    return shared


def _check_heldout(heldout_frac: float, heldout: list[PromptRecord]) -> list[PromptRecord]:
    """``heldout`` (the held-out XSTest safe prompts), or a ConfigError when the fraction holds out too few."""
    if heldout_frac > 0 and len(heldout) < 2:
        raise ConfigError(f"xstest_heldout_frac={heldout_frac} holds out {len(heldout)} XSTest safe prompt(s); the "
                          "held-out separability metrics need at least 2. Fix: raise xstest_heldout_frac (e.g. 0.2), "
                          "or set it to 0 to hold out nothing")
    return heldout


def build_sourced_data(data_dir: str | None, seemingly: list[str], toxic: list[str], heldout_frac: float,
                       split_seed: int, seed: int, eval_toxic: str) -> RefineData:
    """Training prompts from named sources (``dcr.refine.sources``), each without the prompts it shares with an
    evaluation benchmark other than its own; the held-out evaluation sets as in :func:`build_data` (HH-RLHF's
    from the back of a seeded shuffle, XSTest unsafe's from its held-out split when it is a training source)."""
    from dcr.refine.sources import drop_overlap, evaluation_prompts, parse_sources, take

    heldout = _check_heldout(heldout_frac, xstest_split(heldout_frac, split_seed, data_dir)[1])
    evals_norm, seen = evaluation_prompts(data_dir), set()
    classes: dict[int, list[PromptRecord]] = {SEEMINGLY: [], TOXIC: []}
    item_sources: dict[int, list[str]] = {SEEMINGLY: [], TOXIC: []}
    info: dict[str, dict[str, Any]] = {}
    evals: dict[str, list[PromptRecord]] = {}
    for label, items, field in ((SEEMINGLY, seemingly, "seemingly_sources"), (TOXIC, toxic, "toxic_sources")):
        for spec in parse_sources(items, label, field):
            source = SOURCES[spec.name]
            records = source.load(data_dir, heldout_frac, split_seed)
            if spec.name == "hh-rlhf":  # held-out HH prompts from the back of a seeded shuffle, as build_data
                n_eval = len(heldout) if heldout and eval_toxic in ("hh", "both") else 0
                records, back = sample_toxic(records, len(records) - n_eval, n_eval, seed)
                if n_eval:
                    evals["hh"] = back
            kept, dropped = drop_overlap(source, records, evals_norm, seen)
            chosen = take(spec, kept, seed, front=spec.name == "hh-rlhf")
            classes[label] += chosen
            item_sources[label] += [spec.name] * len(chosen)
            info[spec.name] = {"class": "seemingly" if label == SEEMINGLY else "toxic", "family": source.family,
                               "n": len(chosen), "available": len(kept), "dropped_overlap": dropped}
    if heldout and eval_toxic in ("hh", "both") and "hh" not in evals:
        evals["hh"] = sample_toxic(load_hh_harmful(data_dir), 0, len(heldout), seed)[1]
    if heldout and eval_toxic in ("xstest-unsafe", "both"):
        unsafe = (xstest_split(heldout_frac, split_seed, data_dir, label="unsafe")[1] if "xstest-unsafe" in info
                  else load_benchmark("xstest-unsafe", data_dir))
        evals["xstest-unsafe"] = random.Random(seed).sample(unsafe, min(len(heldout), len(unsafe)))
    return RefineData(classes[SEEMINGLY], classes[TOXIC], heldout, evals,
                      item_sources[SEEMINGLY] + item_sources[TOXIC], info)


def refine_data(cfg: Any) -> RefineData:
    """The refine stage's data: the paper's (:func:`build_data`) unless sources are configured."""
    if cfg.seemingly_sources is None and cfg.toxic_sources is None:
        return build_data(cfg.data_dir, cfg.xstest_heldout_frac, cfg.split_seed, cfg.seed, cfg.toxic_ratio,
                          cfg.limit, cfg.eval_toxic)
    return build_sourced_data(cfg.data_dir, cfg.seemingly_sources, cfg.toxic_sources, cfg.xstest_heldout_frac,
                              cfg.split_seed, cfg.seed, cfg.eval_toxic)


def make_batches(cfg: Any, data: RefineData, num_batches: int) -> list[list[int]]:
    """The training batches (``balance``: class, or class-and-source)."""
    labels = data.train_items()[1]
    if cfg.balance == "class-and-source":
        return source_balanced_batches(labels, data.train_sources(), cfg.batch_size, cfg.seemingly_frac, num_batches,
                                       cfg.seed)
    return balanced_batches(labels, cfg.batch_size, cfg.seemingly_frac, num_batches, cfg.seed)


def batch_counts(batch_size: int, seemingly_frac: float, n_seemingly: int, n_toxic: int) -> tuple[int, int]:
    """Prompts per batch from each class: at least 2 of each (so every anchor has a positive), capped by the
    class sizes."""
    k0 = min(max(round(batch_size * seemingly_frac), 2), batch_size - 2)
    return min(k0, n_seemingly), min(batch_size - k0, n_toxic)


class _Draws:
    """Draws from index pools without replacement, each pool reshuffled (one shared seeded generator) when used
    up, so within a pool every prompt is seen equally often (up to one pass)."""

    def __init__(self, pools: dict[Any, list[int]], seed: int) -> None:
        self.pools, self.rng = pools, random.Random(seed)
        self.queues: dict[Any, list[int]] = {c: [] for c in pools}

    def take(self, key: Any, k: int) -> list[int]:
        got: list[int] = []
        while len(got) < k:
            if not self.queues[key]:
                fresh = self.rng.sample(self.pools[key], len(self.pools[key]))
                # a reshuffle mid-batch: put prompts already in this batch last in line (pop takes the end)
                self.queues[key] = [i for i in fresh if i in got] + [i for i in fresh if i not in got]
            got.append(self.queues[key].pop())
        return got


def _class_pools(labels: list[int]) -> dict[int, list[int]]:
    pools = {c: [i for i, y in enumerate(labels) if y == c] for c in (SEEMINGLY, TOXIC)}
    if any(len(p) < 2 for p in pools.values()):
        raise ValueError(f"need at least 2 prompts per class, got {[len(p) for p in pools.values()]}")
    return pools


def balanced_batches(
    labels: list[int], batch_size: int, seemingly_frac: float, num_batches: int, seed: int
) -> list[list[int]]:
    """``num_batches`` batches of indices into ``labels``, each with both classes in fixed proportion.

    Each class is drawn without replacement from a seeded shuffle of its indices and reshuffled when used up,
    so within a class every prompt is seen equally often (up to one pass).
    """
    pools = _class_pools(labels)
    k0, k1 = batch_counts(batch_size, seemingly_frac, len(pools[SEEMINGLY]), len(pools[TOXIC]))
    draws = _Draws(pools, seed)
    return [draws.take(SEEMINGLY, k0) + draws.take(TOXIC, k1) for _ in range(num_batches)]


def source_balanced_batches(
    labels: list[int], sources: list[str], batch_size: int, seemingly_frac: float, num_batches: int, seed: int
) -> list[list[int]]:
    """Like :func:`balanced_batches`, and within each class every source holds a fixed share of every batch
    (:func:`dcr.refine.sources.quotas`: in proportion to the source's size, at least one), so within a batch the
    source cannot predict the class."""
    pools = _class_pools(labels)
    k = dict(zip((SEEMINGLY, TOXIC), batch_counts(batch_size, seemingly_frac, len(pools[SEEMINGLY]),
                                                    len(pools[TOXIC]))))
    by_source: dict[tuple[int, str], list[int]] = {}
    for i, (y, src) in enumerate(zip(labels, sources)):
        by_source.setdefault((y, src), []).append(i)
    plan = []
    for c, field in ((SEEMINGLY, "seemingly_sources"), (TOXIC, "toxic_sources")):
        sizes = {src: len(idx) for (y, src), idx in by_source.items() if y == c}
        plan += [((c, src), q) for src, q in quotas(k[c], sizes, field).items()]
    draws = _Draws(by_source, seed)
    return [[i for key, q in plan for i in draws.take(key, q)] for _ in range(num_batches)]


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    """Batches per epoch: enough to show ``n_items`` prompts once on average."""
    return max(1, math.ceil(n_items / batch_size))
