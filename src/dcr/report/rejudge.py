"""Re-judge an archived run under today's judge rules (``dcr report RUN --rejudge``).

Every verdict file is named by its judge's rules (``judgements/<bench>__keyword_<fingerprint>.jsonl``), so a
changed rule never reuses an old verdict, and the report and the results scripts read only verdicts made under
today's rules. An archive (``dcr archive``) keeps each evaluation's completions but no weights, so its evaluate
stages cannot run again. :func:`rejudge_run` judges the archived completions again with each evaluation's own
judges (:func:`dcr.evaluate.judged.judge_rows`, the code the stage runs) and rewrites what those verdicts feed:
the judged metrics of every prompt benchmark in the stage's ``metrics.json`` (whose ``rejudged`` entry says when
and under which rules), the stage's ``results.jsonl``, the five-set safety average, and the run's
``results.jsonl``. General ability, held-out NLL, refusal probability and response quality do not depend on a
refusal judge and are kept as measured. Old verdict files stay beside the new ones.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import read_json, write_json, write_jsonl

JUDGE_FREE = ("refusal_prob",)  # metrics a prompt benchmark keeps without a judge


def _completions(stage: Path, name: str) -> list[dict[str, Any]] | None:
    """The archived (gzipped) or live completions of one benchmark, or None when the stage has none."""
    from dcr.data.readers import read_jsonl

    for path in (stage / "generations" / f"{name}.jsonl.gz", stage / "generations" / f"{name}.jsonl"):
        if path.is_file():
            return read_jsonl(path)
    return None


def _config(stage: Path) -> Any:
    """The stage's EvaluateConfig, reading the data directory its manifest recorded when its config has none."""
    from dcr.evaluate.config import EvaluateConfig

    manifest = read_json(stage / "manifest.json")
    cfg = EvaluateConfig(**manifest["config"])
    recorded = manifest.get("data_dir")
    if cfg.data_dir is None and recorded and Path(recorded).is_dir():
        cfg = dataclasses.replace(cfg, data_dir=recorded)
    return cfg


def rejudge_stage(stage: Path) -> list[str]:
    """Judge one finished evaluate stage's completions under today's rules; returns the benchmarks re-judged."""
    from dcr.evaluate.judged import judge_rows, slug
    from dcr.evaluate.metrics import Metric
    from dcr.evaluate.stage import metric_fields
    from dcr.evaluate.suite import EXTRA, GENERAL, Runner, expand_benchmarks, safety_average
    from dcr.judges.record import judge_identity

    cfg = _config(stage)
    runner = Runner(cfg, stage, None, None)
    summary = read_json(stage / "metrics.json")
    done = []
    for name in expand_benchmarks(cfg.benchmarks):
        entry = summary["benchmarks"].get(name)
        rows = _completions(stage, slug(name))
        if name in GENERAL + EXTRA or entry is None or rows is None:
            continue
        records, split_ids = runner.prompts(name)
        if {str(r["id"]) for r in rows} != {r.id for r in records}:
            raise DcrError(f"{stage}: the archived completions of {name} are not the prompts its config selects "
                           f"today (data dir {runner.root}). Fix: pass the data directory the run used "
                           "(--data-dir or $DCR_DATA_DIR)")
        _, metrics, notes = judge_rows(slug(name), records, rows, runner.judges(), stage, split_ids)
        kept = [m for m in entry.get("metrics", []) if m["metric"] in JUDGE_FREE]
        entry.update(metrics=[m.as_dict() for m in metrics] + kept, notes=notes)
        done.append(name)
    avg = safety_average(summary["benchmarks"])
    if avg is not None and "safety-avg" in summary["benchmarks"]:
        summary["benchmarks"]["safety-avg"]["metrics"] = [avg.as_dict()]
    specs = [cfg.judge, cfg.safety_judge, *cfg.extra_judges]
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["rejudged"] = {"time": now, "benchmarks": done,
                           "judges": [judge_identity(s) or s for s in specs if s]}
    write_json(stage / "metrics.json", summary)
    write_jsonl(stage / "results.jsonl", [{**metric_fields(cfg, name, Metric(**m)), "time": now}
                                          for name, entry in summary["benchmarks"].items()
                                          for m in entry.get("metrics", [])])
    return done


def rejudge_run(run_dir: Path) -> dict[str, list[str]]:
    """Re-judge every finished evaluate stage of a run or archive, then rebuild its results.jsonl;
    ``{stage directory: benchmarks re-judged}``."""
    from dcr.pipeline.planner import Node
    from dcr.pipeline.run import collect_results
    from dcr.report.paired import EVALUATED

    plan = read_json(run_dir / "plan.json")
    out, nodes = {}, []
    for n in plan.get("nodes", []):
        stage = run_dir / n["dir"]
        node = Node(n["id"], n["stage"], n.get("label", n["id"]), n.get("config", {}), stage, n.get("deps", []))
        node.uses = n.get("uses", [])
        nodes.append(node)
        if n["stage"] == "evaluate" and n.get("status", "done") in EVALUATED and (stage / "metrics.json").is_file():
            out[n["dir"]] = rejudge_stage(stage)
    collect_results(nodes, run_dir)
    return out
