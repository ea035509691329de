"""``evaluate(cfg, out_dir)``: run the requested benchmarks, write metrics.json and results.jsonl records.

Outputs in ``OUT``: ``generations/<bench>.jsonl`` (+ ``.meta.json``), ``judgements/``, ``scores/<bench>.jsonl``
(general-ability option scores), ``metrics.json`` (per benchmark, plus ``missing: {name: reason}`` and
``seconds: {name: wall time}``, under a launch including the part all ranks shared),
``results.jsonl`` (one flat record per number, rewritten on each run), ``manifest.json`` and ``stage.log``.
The caches (generations, judgements, scores, quality) survive a failure, so a rerun resumes.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from dcr.config import to_dict
from dcr.data import SAFETY_SETS, BenchmarkMissing
from dcr.dist import is_main, solo, world_size
from dcr.errors import DataError
from dcr.evaluate.config import ALPACA_REFERENCES, STL_REFERENCE, EvaluateConfig
from dcr.evaluate.metrics import Metric
from dcr.evaluate.suite import METRICS_FILE, Runner, expand_benchmarks, safety_average
from dcr.io import write_json
from dcr.judges.record import judge_identity
from dcr.results import RESULTS, record
from dcr.stage import run_stage

RESUMABLE = ("generations", "judgements", "scores")
log = logging.getLogger("dcr.evaluate")


def _missing_reason(exc: Exception) -> str | None:
    """The reason when ``exc`` says a benchmark's data is absent (not malformed); else None."""
    if isinstance(exc, BenchmarkMissing):
        return exc.reason
    if isinstance(exc, DataError) and exc.path is not None and not Path(str(exc.path)).exists():
        return str(exc)
    return None


def metric_fields(cfg: EvaluateConfig, benchmark: str, m: Metric) -> dict[str, Any]:
    """One results.jsonl record of a benchmark's metric (``dcr.results.record`` adds the time)."""
    return {"model": cfg.model, "benchmark": benchmark, "kind": m.kind, "split": m.split, "metric": m.metric,
            "value": m.value, "n": m.n, "judge": m.judge, **cfg.tags}


def _evaluate_all(cfg: EvaluateConfig, names: list[str], out: Path, runner: Runner, summary: dict[str, Any],
                  transient: dict[str, str]) -> None:
    """Every benchmark in turn into ``summary`` (missing ones with their reason), metrics.json after each."""
    for name in names:
        start = time.perf_counter()
        try:
            metrics, detail = runner.run(name)
        except (BenchmarkMissing, DataError) as exc:
            reason = _missing_reason(exc)
            if reason is None:
                raise
            summary["missing"][name] = reason
            if isinstance(exc, BenchmarkMissing) and exc.transient:
                transient[name] = reason
            write_json(out / METRICS_FILE, summary)
            continue
        seconds = round(time.perf_counter() - start + runner.seconds.get(name, 0.0), 1)  # with its shared part
        log.info("benchmark %s: %.1fs", name, seconds)
        summary["seconds"][name] = seconds
        summary["benchmarks"][name] = {**detail, "limit": cfg.limit, "seed": cfg.seed, "model": cfg.model,
                                       "metrics": [m.as_dict() for m in metrics]}
        for m in metrics:
            record(out, **metric_fields(cfg, name, m))
        write_json(out / METRICS_FILE, summary)


def _run_evaluate(cfg: EvaluateConfig, names: list[str], out: Path) -> dict[str, Any]:
    """The body of the stage: every benchmark in turn, metrics.json rewritten after each."""
    from dcr.models import load_model

    if is_main():
        (out / RESULTS).unlink(missing_ok=True)
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    runner = Runner(cfg, out, model, tok)
    summary: dict[str, Any] = {"model": cfg.model, "judge": cfg.judge, "safety_judge": cfg.safety_judge,
                               "limit": cfg.limit, "seed": cfg.seed, "steer": cfg.steer, "tags": cfg.tags,
                               "config": to_dict(cfg), "benchmarks": {}, "missing": {},
                               "seconds": {}}  # wall time per benchmark (shorter when a rerun reuses caches)
    transient: dict[str, str] = {}
    if cfg.steer:
        from dcr.steer import load_steerer

        steering: Any = load_steerer(cfg.steer).apply(model)
    else:
        steering = nullcontext()
    with steering:
        if world_size() > 1:  # every rank generates and scores its share; the main process evaluates from these
            runner.prepare(names)
            if not is_main():
                return {}
        with solo():
            _evaluate_all(cfg, names, out, runner, summary, transient)
    avg = safety_average(summary["benchmarks"])
    if avg is not None:
        summary["benchmarks"]["safety-avg"] = {"kind": "safety", "n": avg.n, "model": cfg.model, "limit": cfg.limit,
                                               "seed": cfg.seed, "macro_average_of": list(SAFETY_SETS),
                                               "metrics": [avg.as_dict()]}
        record(out, **metric_fields(cfg, "safety-avg", avg))
    write_json(out / METRICS_FILE, summary)
    return {"benchmarks": sorted(summary["benchmarks"]), "missing": sorted(summary["missing"]),
            "transient": transient}


def evaluate(cfg: EvaluateConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Evaluate over-refusal, safety, general ability, refusal probability and response quality.

    Skipped when ``out_dir`` holds a finished run with the same key.
    """
    names = expand_benchmarks(cfg.benchmarks)
    judges = {f"judge:{spec}": judge_identity(spec) for spec in (cfg.judge, cfg.safety_judge, *cfg.extra_judges)
              if spec}  # a changed rule set of a judge invalidates the stage
    ref = {"reference": cfg.reference} if "alpaca-eval" in names and cfg.reference not in (
        *ALPACA_REFERENCES, STL_REFERENCE) else {}  # a reference model's weights change its answers
    return run_stage("evaluate", cfg, out_dir, lambda o: _run_evaluate(cfg, names, o),
                     upstream={"model": cfg.model, "steer": cfg.steer, **ref, **judges}, force=force,
                     keep=RESUMABLE)[0]
