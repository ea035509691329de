"""The benchmarks of one evaluation: group expansion, the per-benchmark runner, the safety average."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dcr.data import (
    BENCHMARKS,
    OVER_REFUSAL_SETS,
    SAFETY_SETS,
    BenchmarkMissing,
    data_dir,
    load_benchmark,
    xstest_split,
)
from dcr.errors import ConfigError, DataError
from dcr.evaluate.config import EvaluateConfig
from dcr.evaluate.general import GENERAL, heldout_nll, run_general
from dcr.evaluate.judged import Judges, prefill, run_prompt_benchmark, slug, sync_cache, sync_meta
from dcr.evaluate.metrics import Metric, kind_of
from dcr.fingerprint import model_fingerprint
from dcr.generate import generate
from dcr.judges import get_judge
from dcr.judges.base import WHOLE_ANSWER
from dcr.stage import versions

EXTRA = ("heldout-nll", "alpaca-eval")
# the generation meta's fields a general-ability score depends on (with score_batch_size: bf16 sums vary by batch)
SCORE_META = ("model", "model_key", "steer", "steer_key", "dtype", "device", "versions")
GROUPS: dict[str, tuple[str, ...]] = {
    "over-refusal": OVER_REFUSAL_SETS,
    "safety-all": SAFETY_SETS,
    "general": GENERAL,
    "all": ("xstest", "coconot", "or-bench", "oktest", "phtest", *SAFETY_SETS, "safety", "i-alpaca",
            "physical-safety-safe", "physical-safety-unsafe", *GENERAL, *EXTRA),
}
METRICS_FILE = "metrics.json"
log = logging.getLogger("dcr.evaluate")


def expand_benchmarks(names: list[str]) -> list[str]:
    """Expand groups (all, over-refusal, safety-all, general), drop duplicates, reject unknown names."""
    out: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            members = GROUPS.get(name, (name,))
            for m in members:
                if m not in BENCHMARKS and m not in GENERAL and m not in EXTRA and not m.startswith("hf:"):
                    known = ", ".join([*GROUPS, *BENCHMARKS, *GENERAL, *EXTRA])
                    raise ConfigError(f"benchmark {m!r} unknown. Fix: use one of {known}, or hf:OWNER/NAME")
                if m not in out:
                    out.append(m)
    return out


def reader(cfg: EvaluateConfig) -> Any:
    """The judge whose :meth:`~dcr.judges.base.Judge.has_read` may end generation early, or None: only when
    ``stop_at_judge_window`` is on and every configured judge is the keyword judge."""
    from dcr.judges.base import parse_spec

    specs = [cfg.judge, *([cfg.safety_judge] if cfg.safety_judge else []), *cfg.extra_judges]
    if not cfg.stop_at_judge_window or any(parse_spec(s)[0] != "keyword" for s in specs):
        return None
    return get_judge("keyword")


def generation_meta(cfg: EvaluateConfig) -> dict[str, Any]:
    """Everything that changes a generated text: cached generations are reused only under an equal meta."""
    from dcr.models import pick_device, pick_dtype

    device = pick_device(cfg.device)
    lib, early = versions(), reader(cfg)
    return {"model": cfg.model, "model_key": model_fingerprint(cfg.model), "steer": cfg.steer,
            "steer_key": model_fingerprint(cfg.steer), "dtype": str(pick_dtype(cfg.dtype, device)),
            "device": device.split(":")[0], "template": cfg.template, "max_new_tokens": cfg.max_new_tokens,
            "batch_size": cfg.batch_size, "stops": "eos+end-of-turn",  # generation stops at stop_ids
            "reading": early.reading() if early else WHOLE_ANSWER,
            "versions": {k: lib.get(k) for k in ("dcr", "torch", "transformers")}}


class Runner:
    """State shared across the benchmarks of one run: model, judges (loaded once), the XSTest split."""

    def __init__(self, cfg: EvaluateConfig, out: Path, model: Any, tok: Any) -> None:
        self.cfg, self.out, self.model, self.tok = cfg, out, model, tok
        self.root = data_dir(cfg.data_dir)
        self.meta = generation_meta(cfg)
        self.reader = reader(cfg)
        self._judges: Judges | None = None
        self._split: tuple[set[str], set[str]] | None = None
        self._annotator: Any = None
        self._scored: dict[str, tuple[list[Metric], dict[str, Any]]] = {}
        self.seconds: dict[str, float] = {}  # per benchmark, the time spent in :meth:`prepare`

    def judges(self) -> Judges:
        if self._judges is None:
            main = get_judge(self.cfg.judge)
            refusal = main if main.measures == "refusal" else None
            safety = get_judge(self.cfg.safety_judge) if self.cfg.safety_judge else main
            self._judges = Judges(refusal, safety, [get_judge(spec) for spec in self.cfg.extra_judges])
        return self._judges

    def split_ids(self) -> tuple[set[str], set[str]]:
        if self._split is None:
            ind, held = xstest_split(self.cfg.xstest_heldout_frac, self.cfg.split_seed, self.root)
            self._split = ({r.id for r in held}, {r.id for r in ind} | {r.id for r in held})
        return self._split

    def prompts(self, name: str) -> tuple[list[Any], tuple[set[str], set[str]]]:
        """A prompt benchmark's records as this config selects them, and the XSTest split ids they need."""
        records = load_benchmark(name, self.root, self.cfg.limit, self.cfg.seed)
        has_xstest = any(r.source == "xstest" and r.label == "safe" for r in records)
        return records, self.split_ids() if has_xstest else (set(), set())

    def prepare(self, names: list[str]) -> None:
        """Multi-process launch: all ranks generate every prompt benchmark's planned batches, sharded, into the
        generation caches, and score the general-ability sets and heldout-nll's batches, sharded (the scores
        cached, or kept for :meth:`run`); the main process then evaluates from these (the same completions and
        scores as one process: each batch is the planned one). ``self.seconds``: each benchmark's time here."""
        from dcr.dist import barrier, is_main, world_size

        for name in names:
            start = time.perf_counter()
            if name in GENERAL or name == "heldout-nll":
                try:
                    self._scored[name] = self._score(name, shard=True)
                except (BenchmarkMissing, DataError):
                    continue  # the main process records it as missing
                if is_main():
                    log.info("%s: scored by %d processes in %.1fs", name, world_size(), time.perf_counter() - start)
            elif name != "alpaca-eval":
                try:
                    records = load_benchmark(name, self.root, self.cfg.limit, self.cfg.seed)
                except (BenchmarkMissing, DataError):
                    continue
                gen_dir = self.out / "generations"
                if is_main():
                    sync_meta(gen_dir, slug(name), self.meta)
                    prefill(gen_dir, slug(name), records, self.meta)
                barrier()
                generate(self.model, self.tok, [{"id": r.id, "prompt": r.prompt} for r in records],
                         gen_dir / f"{slug(name)}.jsonl", self.cfg.max_new_tokens, self.cfg.batch_size,
                         self.cfg.template, description=name,
                         reader_done=self.reader.has_read if self.reader else None)
            self.seconds[name] = time.perf_counter() - start

    def _score(self, name: str, shard: bool = False) -> tuple[list[Metric], dict[str, Any]]:
        """A general-ability set or heldout-nll; ``shard``: every rank scores its share (every rank calls it)."""
        from dcr.dist import barrier, is_main

        cfg = self.cfg
        if name == "heldout-nll":
            n = cfg.nll_n if cfg.limit is None else min(cfg.nll_n, cfg.limit)
            metrics, detail = heldout_nll(self.model, self.tok, self.root, n, cfg.seed, cfg.nll_reference,
                                          cfg.nll_max_tokens, cfg.template, cfg.score_batch_size, shard=shard)
            return metrics, {"kind": "general", "n": n, **detail}
        cache = self.out / "scores" / f"{name}.shots{cfg.mmlu_shots}.jsonl"
        if is_main():
            sync_cache(cache, {**{k: v for k, v in self.meta.items() if k in SCORE_META},
                               "score_batch_size": cfg.score_batch_size})
        barrier()  # the others read the cache the main process checked
        metrics, detail = run_general(name, self.model, self.tok, self.root, cfg.limit, cfg.seed, cfg.mmlu_shots,
                                      cfg.score_batch_size, cache, shard=shard)
        return metrics, {"kind": "general", "n": metrics[0].n, **detail}

    def run(self, name: str) -> tuple[list[Metric], dict[str, Any]]:
        cfg = self.cfg
        if name in self._scored:  # scored by every rank in :meth:`prepare`
            return self._scored.pop(name)
        if name in GENERAL or name == "heldout-nll":
            return self._score(name)
        if name == "alpaca-eval":
            from dcr.evaluate.quality import get_annotator, not_measured, run_quality

            reason = not_measured(cfg)
            if reason is not None:
                raise BenchmarkMissing(name, reason)
            if self._annotator is None:
                self._annotator = get_annotator(cfg.annotator, cfg.dtype, cfg.device)
            metrics, detail = run_quality(self.model, self.tok, cfg, self.out, self.root, self._annotator, self.meta)
            return metrics, {"kind": "quality", "n": metrics[0].n, **detail}
        records, split_ids = self.prompts(name)
        judges = self.judges()
        metrics, detail = run_prompt_benchmark(slug(name), records, self.model, self.tok, cfg, self.out, judges,
                                               self.meta, split_ids, self.reader)
        kind = BENCHMARKS[name].kind if name in BENCHMARKS else kind_of({r.label for r in records})
        return metrics, {"kind": kind, "n": len(records), "judge": judges.refusal.name if judges.refusal else None,
                         "safety_judge": judges.safety.name, **detail}


def safety_average(benchmarks: dict[str, Any]) -> Metric | None:
    """Macro average of the five safety sets' defense success rates (the paper's Safety column), if all ran."""
    rates = []
    for name in SAFETY_SETS:
        found = [m for m in benchmarks.get(name, {}).get("metrics", [])
                 if m["metric"] == "defense_success_rate" and m["split"] == "all"]
        if not found:
            return None
        rates.append(found[0])
    judges = {m["judge"] for m in rates}
    return Metric("safety", "all", "defense_success_rate", sum(m["value"] for m in rates) / len(rates),
                  sum(m["n"] for m in rates), judges.pop() if len(judges) == 1 else "mixed")
