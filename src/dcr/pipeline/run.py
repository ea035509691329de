"""Running a planned experiment: each stage in order, results.jsonl kept current, the report at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import read_json, read_jsonl, write_jsonl
from dcr.pipeline.experiment import Experiment
from dcr.pipeline.planner import Node, Registry, default_registry, plan, write_plan
from dcr.stage import MANIFEST, make_out_dir, read_manifest, stage_lock

log = logging.getLogger("dcr.pipeline")


FINISHED = ("done", "incomplete")  # incomplete: finished, but a transient part (hub data) is retried next run


def _manifest_state(node: Node) -> tuple[Any, ...] | None:
    """(status, key, mtime) of the node's manifest, or None when it has none."""
    man = read_manifest(node.dir)
    if man is None:
        return None
    return (man.get("status"), man.get("key"), (node.dir / MANIFEST).stat().st_mtime_ns)


Progress = Callable[[int, int, Node, str, float], None]


def _no_progress(i: int, n: int, node: Node, status: str, seconds: float) -> None:
    """The default progress callback (run.log gets every event anyway)."""


def run_nodes(nodes: list[Node], run_dir: Path, exp: Experiment, registry: Registry, force: bool = False,
              progress: Progress = _no_progress) -> None:
    """Run each node in order; a failure marks the node failed in plan.json and stops the run."""

    def event(i: int, node: Node, status: str, seconds: float) -> None:
        log.info("stage %d/%d: %s: %s (%.1fs, %s)", i, len(nodes), node.label, status, seconds, node.dir.name)
        progress(i, len(nodes), node, status, seconds)

    for i, node in enumerate(nodes, start=1):
        fn = registry[node.stage][1]
        before = _manifest_state(node)
        if before is None or before[0] != "done":  # a finished stage only reports "skipped" afterwards
            event(i, node, "running", 0.0)
        start = time.time()
        try:
            procs = exp.evaluate_processes if node.stage == "evaluate" else 1
            if (exp.stage_processes or procs > 1) and fn is default_registry()[node.stage][1]:
                from dcr.pipeline.child import run_in_child

                run_in_child(node.stage, node.cfg, node.dir, force, processes=procs)
            else:
                fn(node.cfg, node.dir, force=force)
        except BaseException as exc:
            node.status = "failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted"
            write_plan(exp, nodes, run_dir)
            event(i, node, node.status, time.time() - start)
            log.exception("stage %s failed; see %s", node.label, node.dir / "stage.log")
            if isinstance(exc, DcrError):
                raise DcrError(f"stage {i}/{len(nodes)} {node.label} failed ({node.dir}): {exc}") from exc
            raise
        after = _manifest_state(node)
        skipped = before is not None and before == after and before[0] == "done"
        node.status = "skipped" if skipped else "incomplete" if after and after[0] == "incomplete" else "done"
        node.wall_time_s = round(time.time() - start, 3)
        write_plan(exp, nodes, run_dir)
        if node.stage == "evaluate":
            collect_results(nodes, run_dir)  # keep results.jsonl current, so `dcr report` works mid-run
        event(i, node, node.status, node.wall_time_s)


def collect_results(nodes: list[Node], run_dir: Path) -> int:
    """RUN_DIR/results.jsonl: every evaluate record tagged with method, seed and model, plus missing benchmarks."""
    rows: list[dict[str, Any]] = []
    for node in nodes:
        state = _manifest_state(node)
        if node.stage != "evaluate" or state is None or state[0] not in FINISHED:
            continue  # only finished evaluations (a partial report after an interruption stays honest)
        records = read_jsonl(node.dir / "results.jsonl")
        metrics = node.dir / "metrics.json"
        missing = read_json(metrics).get("missing", {}) if metrics.exists() else {}
        for use in node.uses:
            for rec in records:
                rows.append({**rec, "model_path": rec.get("model"), **use, "stage": node.id})
            for bench, reason in missing.items():
                rows.append({"benchmark": bench, "metric": "missing", "reason": reason, "value": None, **use,
                             "stage": node.id})
    write_jsonl(run_dir / "results.jsonl", rows)
    return len(rows)


class _RunLog:
    """Send every ``dcr.*`` log record (the pipeline's and each stage's) to RUN_DIR/run.log while running."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger("dcr")

    def __enter__(self) -> _RunLog:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()


def preflight(nodes: list[Node]) -> None:
    """Resolve every model and check every benchmark's data before the first stage runs.

    Every method starts from a stage without upstream stages (refine, align or evaluate of the base model), so
    checking those nodes' inputs covers every model; evaluate nodes check their benchmarks.
    """
    from dcr.config import StageConfig
    from dcr.evaluate.config import EvaluateConfig

    for node in nodes:
        try:
            if not node.deps and isinstance(node.cfg, StageConfig):
                node.cfg.check_inputs()
            elif isinstance(node.cfg, EvaluateConfig):
                node.cfg.check_benchmarks()
        except DcrError as exc:
            raise DcrError(f"before starting: {node.label}: {exc}") from None


def run_experiment(exp: Experiment, run_dir: str | Path, registry: Registry | None = None, force: bool = False,
                   progress: Progress = _no_progress, report: bool = True) -> list[Node]:
    """Plan, run every stage (skipping finished ones), collect results.jsonl and write the report."""
    registry = registry or default_registry()
    run_path = Path(run_dir).resolve()
    nodes = plan(exp, run_path, registry)  # config errors surface before anything is written
    preflight(nodes)
    make_out_dir(run_path)
    with stage_lock(run_path), _RunLog(run_path / "run.log"):
        write_plan(exp, nodes, run_path)
        log.info("experiment %s (%s): %d stages in %s", exp.name, exp.source, len(nodes), run_path)
        run_nodes(nodes, run_path, exp, registry, force, progress)
        n = collect_results(nodes, run_path)
        log.info("collected %d result records into %s", n, run_path / "results.jsonl")
        if report:
            from dcr.report import report as write_report

            paths = write_report(run_path)
            log.info("report written: %s", ", ".join(str(p) for p in paths))
    return nodes
