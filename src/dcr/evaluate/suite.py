"""``evaluate(cfg, out_dir)``: run the requested benchmarks, write metrics.json and results.jsonl records.

Outputs in ``OUT``: ``generations/<bench>.jsonl`` (+ ``.meta.json``), ``judgements/``, ``scores/<bench>.jsonl``
(general-ability option scores), ``metrics.json`` (per benchmark, plus ``missing: {name: reason}``),
``results.jsonl`` (one flat record per number, rewritten on each run), ``manifest.json`` and ``stage.log``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from dcr.config import to_dict
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
from dcr.evaluate.judged import Judges, run_prompt_benchmark, slug
from dcr.evaluate.metrics import Metric
from dcr.io import read_json, write_json
from dcr.results import RESULTS, record
from dcr.stage import MANIFEST, run_stage

EXTRA = ("heldout-nll", "alpaca-eval")
GROUPS: dict[str, tuple[str, ...]] = {
    "over-refusal": OVER_REFUSAL_SETS,
    "safety-all": SAFETY_SETS,
    "general": GENERAL,
    "all": ("xstest", "coconot", "or-bench", "oktest", "phtest", *SAFETY_SETS, "safety", "i-alpaca",
            "physical-safety-safe", "physical-safety-unsafe", *GENERAL, *EXTRA),
}
METRICS_FILE = "metrics.json"


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


def stage_fingerprint(path: str | None) -> str | None:
    """The manifest key of a dcr stage directory (so a re-run upstream stage invalidates this one)."""
    if not path:
        return None
    p = Path(path).expanduser()
    for cand in (p / MANIFEST, p.parent / MANIFEST if p.name == "model" else None):
        if cand is not None and cand.exists():
            try:
                return str(read_json(cand).get("key"))
            except ValueError:
                return None
    return None


def evaluate(cfg: EvaluateConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Run ``cfg.benchmarks`` on ``cfg.model``; return ``out_dir`` (skipped when already done with this config)."""
    names = expand_benchmarks(cfg.benchmarks)
    inputs = {"model": stage_fingerprint(cfg.model), "steer": stage_fingerprint(cfg.steer)}
    out, _ = run_stage("evaluate", cfg, out_dir, lambda o: _run(cfg, names, o, inputs), inputs, force)
    return out


def _load_judge(spec: str) -> Any:
    try:
        from dcr.judges import get_judge
    except ImportError:  # the package __init__ may not re-export it yet
        from dcr.judges.base import get_judge
    return get_judge(spec)


class _Runner:
    """State shared across the benchmarks of one run: model, judges (loaded once), the XSTest split."""

    def __init__(self, cfg: EvaluateConfig, out: Path, inputs: dict[str, Any], model: Any, tok: Any) -> None:
        self.cfg, self.out, self.model, self.tok = cfg, out, model, tok
        self.root = data_dir(cfg.data_dir)
        self.meta = {"model": cfg.model, "model_key": inputs["model"], "steer": cfg.steer,
                     "steer_key": inputs["steer"], "dtype": cfg.dtype, "template": cfg.template,
                     "max_new_tokens": cfg.max_new_tokens}
        self._judges: Judges | None = None
        self._split: tuple[set[str], set[str]] | None = None
        self._annotator: Any = None

    def judges(self) -> Judges:
        if self._judges is None:
            main = _load_judge(self.cfg.judge)
            refusal = main if getattr(main, "measures", "refusal") == "refusal" else None
            safety = _load_judge(self.cfg.safety_judge) if self.cfg.safety_judge else main
            self._judges = Judges(refusal, safety)
        return self._judges

    def split_ids(self) -> tuple[set[str], set[str]]:
        if self._split is None:
            ind, held = xstest_split(self.cfg.xstest_heldout_frac, self.cfg.split_seed, self.root)
            self._split = ({r.id for r in held}, {r.id for r in ind} | {r.id for r in held})
        return self._split

    def run(self, name: str) -> tuple[list[Metric], dict[str, Any]]:
        cfg = self.cfg
        if name in GENERAL:
            cache = self.out / "scores" / f"{name}.shots{cfg.mmlu_shots}.jsonl"
            metrics, detail = run_general(name, self.model, self.tok, self.root, cfg.limit, cfg.seed,
                                          cfg.mmlu_shots, cfg.score_batch_size, cache)
            return metrics, {"kind": "general", "n": metrics[0].n, **detail}
        if name == "heldout-nll":
            n = cfg.nll_n if cfg.limit is None else min(cfg.nll_n, cfg.limit)
            metrics, detail = heldout_nll(self.model, self.tok, self.root, n, cfg.seed, cfg.nll_reference,
                                          cfg.nll_max_tokens, cfg.template, cfg.score_batch_size)
            return metrics, {"kind": "general", "n": n, **detail}
        if name == "alpaca-eval":
            from dcr.evaluate.quality import get_annotator, run_quality

            if self._annotator is None:
                self._annotator = get_annotator(cfg.annotator, cfg.dtype, cfg.device)
            metrics, detail = run_quality(self.model, self.tok, cfg, self.out, self.root, self._annotator, self.meta)
            return metrics, {"kind": "quality", "n": metrics[0].n, **detail}
        records = load_benchmark(name, self.root, cfg.limit, cfg.seed)
        has_xstest = any(r.source == "xstest" and r.label == "safe" for r in records)
        split_ids = self.split_ids() if has_xstest else (set(), set())
        judges = self.judges()
        metrics, detail = run_prompt_benchmark(slug(name), records, self.model, self.tok, cfg, self.out, judges,
                                               self.meta, split_ids)
        kind = BENCHMARKS[name].kind if name in BENCHMARKS else _kind_of(records)
        return metrics, {"kind": kind, "n": len(records), "judge": judges.refusal.name if judges.refusal else None,
                         "safety_judge": judges.safety.name, **detail}


def _kind_of(records: list[Any]) -> str:
    labels = {r.label for r in records}
    return "mixed" if len(labels) > 1 else "safety" if labels == {"unsafe"} else "over-refusal"


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


def _missing_reason(exc: Exception) -> str | None:
    """The reason when ``exc`` says a benchmark's data is absent (not malformed); else None."""
    if isinstance(exc, BenchmarkMissing):
        return exc.reason
    if isinstance(exc, DataError) and exc.path is not None and not Path(str(exc.path)).exists():
        return str(exc)
    return None


def _run(cfg: EvaluateConfig, names: list[str], out: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    from dcr.models import load_model

    (out / RESULTS).unlink(missing_ok=True)
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    runner = _Runner(cfg, out, inputs, model, tok)
    summary: dict[str, Any] = {"model": cfg.model, "judge": cfg.judge, "safety_judge": cfg.safety_judge,
                               "limit": cfg.limit, "seed": cfg.seed, "steer": cfg.steer, "tags": cfg.tags,
                               "config": to_dict(cfg), "benchmarks": {}, "missing": {}}
    if cfg.steer:
        from dcr.steer import load_steerer

        steering: Any = load_steerer(cfg.steer).apply(model)
    else:
        steering = nullcontext()
    with steering:
        for name in names:
            try:
                metrics, detail = runner.run(name)
            except (BenchmarkMissing, DataError) as exc:
                reason = _missing_reason(exc)
                if reason is None:
                    raise
                summary["missing"][name] = reason
                write_json(out / METRICS_FILE, summary)
                continue
            summary["benchmarks"][name] = {**detail, "limit": cfg.limit, "seed": cfg.seed, "model": cfg.model,
                                           "metrics": [m.as_dict() for m in metrics]}
            for m in metrics:
                record(out, model=cfg.model, benchmark=name, kind=m.kind, split=m.split, metric=m.metric,
                       value=m.value, n=m.n, judge=m.judge, **cfg.tags)
            write_json(out / METRICS_FILE, summary)
    avg = safety_average(summary["benchmarks"])
    if avg is not None:
        summary["benchmarks"]["safety-avg"] = {"kind": "safety", "n": avg.n, "model": cfg.model, "limit": cfg.limit,
                                               "seed": cfg.seed, "macro_average_of": list(SAFETY_SETS),
                                               "metrics": [avg.as_dict()]}
        record(out, model=cfg.model, benchmark="safety-avg", kind=avg.kind, split=avg.split, metric=avg.metric,
               value=avg.value, n=avg.n, judge=avg.judge, **cfg.tags)
    write_json(out / METRICS_FILE, summary)
    return {"benchmarks": sorted(summary["benchmarks"]), "missing": sorted(summary["missing"])}
