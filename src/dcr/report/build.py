"""Assemble RUN_DIR/report.md and RUN_DIR/report.html from results.jsonl, plan.json and the stage outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import atomic_open, read_json
from dcr.report import figures, judging, matched, paired, tables
from dcr.report.hosts import dtype_warnings
from dcr.report.render import Block, Bullets, Heading, Image, Para, to_html, to_markdown
from dcr.report.retention import retention_warnings
from dcr.report.trained import note, trained
from dcr.results import RESULTS, load_checked
from dcr.stage import read_manifest


def _plan(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "plan.json"
    return read_json(path) if path.exists() else {}


def heldout_frac(run_dir: Path, plan: dict[str, Any]) -> float | None:
    """The run's ``xstest_heldout_frac`` (from plan.json, or a single evaluate directory's metrics.json); None
    when unknown or not one value."""
    configs = [n.get("config", {}) for n in plan.get("nodes", []) if n.get("stage") == "evaluate"]
    if not plan and (run_dir / "metrics.json").exists():
        configs = [read_json(run_dir / "metrics.json").get("config") or {}]
    fracs = {float(c["xstest_heldout_frac"]) for c in configs if c.get("xstest_heldout_frac") is not None}
    return fracs.pop() if len(fracs) == 1 else None


def _overview(plan: dict[str, Any], rows: list[dict[str, Any]], run_dir: Path) -> list[Block]:
    models = plan.get("models") or sorted({str(r.get("model")) for r in rows})
    methods = plan.get("methods") or tables._sort_methods(str(r.get("method")) for r in rows if "method" in r)
    seeds = plan.get("seeds") or sorted({r.get("seed") for r in rows if "seed" in r})
    items = [f"run directory: {run_dir}", f"experiment: {plan.get('experiment', '?')} ({plan.get('source', '?')})",
             f"models: {', '.join(map(str, models))}", f"methods: {', '.join(map(str, methods))}",
             f"seeds: {', '.join(map(str, seeds))} (values are mean ± sample std over seeds)",
             f"benchmarks requested: {', '.join(plan.get('benchmarks', [])) or '?'}",
             f"result records: {len(rows)} in {RESULTS}"]
    frac = heldout_frac(run_dir, plan)
    if frac is not None:
        items.append(f"XSTest split: xstest_heldout_frac = {frac:g}" + (
            " (nothing held out: XSTest is in-distribution, trained on by refinement and STL-aug)" if frac == 0
            else " (the held-out column's prompts are never trained on)"))
    blocks: list[Block] = [Heading(f"DCR report: {plan.get('experiment', run_dir.name)}", 1),
                           Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `dcr report`.")]
    if plan.get("reference"):
        blocks.append(Para(f"Read this run beside its reference: {plan['reference']}"))
    return [*blocks, Bullets(items)]


def _records(run_dir: Path) -> tuple[list[dict[str, Any]], list[Block]]:
    """The result records and notes about them. A single `dcr evaluate` directory is reported too: its
    records carry no method, so they are labelled by their tags or as "evaluated"."""
    rows, torn = load_checked(run_dir / RESULTS)
    notes: list[Block] = []
    if torn:
        notes.append(Para(f"Note: the last line of {RESULTS} was incomplete (a writer was still appending or was "
                          "interrupted) and is left out."))
    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.get("stage") == "evaluate":
        rows = [{"method": "evaluated", "seed": 0, **r} for r in rows]
        notes.append(Para(f"A single `dcr evaluate` directory ({manifest.get('status')}): one row, the model as "
                          "evaluated."))
    return rows, notes


def build(run_dir: Path) -> list[Block]:
    """The report's blocks: overview, Table 1 per model, missing columns, judges, sizes, figures, costs."""
    rows, notes = _records(run_dir)
    plan = _plan(run_dir)
    blocks = _overview(plan, rows, run_dir) + notes + retention_warnings(run_dir, plan) + dtype_warnings(run_dir, plan)
    heldout = heldout_frac(run_dir, plan) != 0
    blocks.append(Heading("Over-refusal, safety and general ability (Table 1 layout)"))
    refined = trained(run_dir, plan)
    t1 = tables.table1(rows, heldout, refined.benchmarks, note(refined))
    blocks.extend(t1 if t1 else [Para("No evaluation records yet.")])
    blocks.extend(tables.degenerate_table(rows, heldout))
    gaps = tables.missing(rows, plan.get("benchmarks"), heldout)
    if gaps:
        blocks.append(Heading("Missing benchmarks", 3))
        blocks.append(Bullets([f"{label}: {reason}" for label, reason in gaps]))
    if plan:
        blocks.append(Heading("DCR + STL against STL, paired over prompts"))
        blocks.extend(paired.paired_table(run_dir, plan))
    blocks.append(judging.judges_table(rows))
    disagreement = judging.disagreement_table(rows)
    if disagreement is not None:
        blocks.append(disagreement)
    if plan:
        blocks.append(tables.sizes_table(plan))
        figs = figures.write_figures(run_dir, plan)
        blocks.append(Heading("Refusal behaviour during alignment (Fig. 4 and Fig. 5 layouts)"))
        if figs:
            blocks.extend(Image(path, caption) for path, caption in figs)
            blocks.extend(matched.matched_table(run_dir, plan))
            if not heldout:
                blocks.append(Para("Seemingly toxic probe prompts: with xstest_heldout_frac = 0 they are "
                                   "in-distribution XSTest prompts (refinement trains on them, as in the paper's "
                                   "Fig. 4/5); STL-aug trains on all of them, so it tracks no seemingly toxic group."))
        else:
            blocks.append(Para("No align stage wrote a tracking.csv (no aligned method, or tracking off)."))
        blocks.append(Heading("Cost"))
        blocks.append(tables.cost_table(run_dir, plan))
    else:
        blocks.append(Para("No plan.json in the run directory: sizes, figures and costs are left out."))
    return blocks


def report(run_dir: str | Path) -> list[Path]:
    """Write RUN_DIR/report.md and RUN_DIR/report.html (figures under RUN_DIR/figures/); return the two paths."""
    run_path = Path(run_dir).resolve()
    if not (run_path / RESULTS).exists() and not (run_path / "plan.json").exists():
        raise DcrError(f"{run_path}: no {RESULTS} or plan.json. Fix: pass a directory written by `dcr run`")
    blocks = build(run_path)
    md, page = run_path / "report.md", run_path / "report.html"
    with atomic_open(md) as fh:
        fh.write(to_markdown(blocks, run_path))
    with atomic_open(page) as fh:
        fh.write(to_html(blocks, f"DCR report: {run_path.name}"))
    return [md, page]
