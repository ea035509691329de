"""Refusal tracking during SFT (paper Fig. 4/5): refusal probability (A.5) and keyword refusal rate.

Three fixed probe groups of ``track_n`` prompts, none of them trained on:

* ``toxic``: held-out harmful prompts (``track_toxic``, default AdvBench);
* ``seemingly_toxic``: the held-out part of ``xstest_split`` (never used by refine or STL-aug);
* ``normal``: benign instructions (``track_normal``, default STL I-Alpaca).

``OUT/tracking.csv`` has columns ``step, group, refusal_prob, refusal_rate, n``; ``OUT/train_log.csv`` has
``step, loss, lr, epoch``. Both are rewritten atomically; on resume rows after the checkpoint step are dropped.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from dcr.align.config import AlignConfig
from dcr.align.data import normalize_prompt
from dcr.align.train import compute_context
from dcr.data import PromptRecord, load_benchmark, xstest_split
from dcr.evaluate.refusal_prob import refusal_prob
from dcr.generate import generate_texts
from dcr.io import write_table
from dcr.judges.base import WHOLE_ANSWER
from dcr.stage import HeapGuard

log = logging.getLogger("dcr.align")
GROUPS = ("toxic", "seemingly_toxic", "normal")
TRACK_COLUMNS = ("step", "group", "refusal_prob", "refusal_rate", "n")


def probe_sets(cfg: AlignConfig, train_prompts: set[str]) -> dict[str, list[PromptRecord]]:
    """The three fixed probe groups, seeded, with every prompt seen in training removed.

    With ``xstest_heldout_frac=0`` nothing is held out: ``seemingly_toxic`` is drawn from the in-distribution
    XSTest prompts (refine trains on them; the paper's Fig. 4/5 track them too), which is logged; STL-aug trains
    on all of them, so there the group is empty and not tracked (also logged).
    """
    in_dist, heldout = xstest_split(cfg.xstest_heldout_frac, cfg.split_seed, cfg.data_dir)
    if not heldout:
        log.warning("xstest_heldout_frac=0: no held-out XSTest prompts; the seemingly_toxic probe group is drawn "
                    "from the in-distribution XSTest prompts (trained on by refine), not from held-out ones")
    pools = {
        "toxic": load_benchmark(cfg.track_toxic, cfg.data_dir),
        "seemingly_toxic": heldout or in_dist,
        "normal": load_benchmark(cfg.track_normal, cfg.data_dir),
    }
    out = {}
    for group, pool in pools.items():
        fresh = [r for r in pool if normalize_prompt(r.prompt) not in train_prompts]
        if not fresh:
            log.warning("probe group %s is empty: this stage trains on every one of its prompts; not tracked", group)
        k = min(cfg.track_n, len(fresh))
        keep = set(random.Random(cfg.seed).sample(range(len(fresh)), k))
        out[group] = [r for i, r in enumerate(fresh) if i in keep]
    return out


def refusal_probs(model: Any, tok: Any, prompts: list[str], template: str, batch_size: int,
                  prefix_cache: bool = True) -> list[float]:
    """A.5: P_refuse(x) = sum over S of P(y | x), teacher-forced, one value per prompt."""
    return refusal_prob(model, tok, prompts, template, batch_size=batch_size, prefix_cache=prefix_cache).tolist()


def measure(model: Any, tok: Any, probes: dict[str, list[PromptRecord]], cfg: AlignConfig, judge: Any,
            autocast: torch.dtype | None = None) -> list[dict[str, Any]]:
    """One row per group: mean refusal probability and the judge's refusal rate of greedy answers."""
    was_training = model.training
    model.eval()
    ctx = compute_context(model, autocast) if autocast is not None else contextlib.nullcontext()
    groups = [(g, [r.prompt for r in probes.get(g, [])]) for g in GROUPS]
    prompts = [p for _, ps in groups for p in ps]  # all groups batched together: fewer, fuller batches
    rows = []
    try:
        with ctx, torch.no_grad():
            probs = refusal_probs(model, tok, prompts, cfg.template, cfg.track_batch_size, cfg.track_prefix_cache)
            completions: list[str] = []
            done = judge.has_read if judge.reading() != WHOLE_ANSWER else None  # its verdict is fixed there
            for i in range(0, len(prompts), cfg.track_batch_size):
                completions += generate_texts(model, tok, prompts[i:i + cfg.track_batch_size],
                                              cfg.track_max_new_tokens, cfg.template, done)
            refused = judge.judge(prompts, completions)
        at = 0
        for group, ps in groups:
            if ps:
                p, r = probs[at:at + len(ps)], refused[at:at + len(ps)]
                rows.append({"group": group, "refusal_prob": float(f"{sum(p) / len(p):.6g}"),
                             "refusal_rate": round(sum(map(bool, r)) / len(r), 6), "n": len(ps)})
            at += len(ps)
    finally:
        model.train(was_training)
    return rows


def _read_rows(path: Path, max_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return [r for r in csv.DictReader(fh) if int(float(r["step"])) <= max_step]


class RefusalTracker(TrainerCallback):
    """Measure the probe groups at step 0, every ``track_every`` optimizer steps and at the end."""

    def __init__(self, tok: Any, probes: dict[str, list[PromptRecord]], cfg: AlignConfig, path: Path,
                 autocast: torch.dtype | None = None, judge: Any = None) -> None:
        self.tok, self.probes, self.cfg, self.path, self.autocast = tok, probes, cfg, Path(path), autocast
        self.judge = judge
        self.rows: list[dict[str, Any]] = []

    def _track(self, model: Any, step: int) -> None:
        if any(int(float(r["step"])) == step for r in self.rows):
            return
        if self.judge is None:
            from dcr.judges import get_judge

            self.judge = get_judge(self.cfg.judge)
        start = time.time()
        new = [{"step": step, **r} for r in measure(model, self.tok, self.probes, self.cfg, self.judge,
                                                     self.autocast)]
        log.info("tracking step %d (%.0fs): %s", step, time.time() - start,
                 {r["group"]: (r["refusal_prob"], r["refusal_rate"]) for r in new})
        self.rows += new
        write_table(self.path, self.rows)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self.rows = _read_rows(self.path, state.global_step)
        self._track(model, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if state.global_step % self.cfg.track_every == 0:
            self._track(model, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self._track(model, state.global_step)


class TrimHeap(TrainerCallback):
    """:class:`dcr.stage.HeapGuard` after every optimizer step (CPU training)."""

    def __init__(self) -> None:
        self.guard = HeapGuard()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.guard.step()


class TrainLog(TrainerCallback):
    """``OUT/train_log.csv``: one row per Trainer log event with a training loss."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.rows = _read_rows(self.path, state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, "loss": round(float(logs["loss"]), 6),
               "lr": float(logs.get("learning_rate", 0.0)), "epoch": round(float(state.epoch or 0), 4)}
        self.rows.append(row)
        log.info("step %d/%d loss %.4f lr %.2e", row["step"], state.max_steps, row["loss"], row["lr"])
        write_table(self.path, self.rows)
