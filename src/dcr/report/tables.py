"""Tables of the report: the paper's Table 1 layout (mean ± std over seeds), judges, sizes and costs (Table 2).

Input is the flat records of ``RUN_DIR/results.jsonl`` (tagged with ``model``, ``method`` and ``seed`` by the
pipeline) and, for the cost table, the stage manifests listed in ``RUN_DIR/plan.json``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.report.paper import paper_rows
from dcr.report.render import Table
from dcr.stage import read_manifest

METHOD_ORDER = ("base", "dcr", "stl", "stl-aug", "surgical", "scans", "dcr+stl", "dcr+stl-aug")
METHOD_NAMES = {"base": "Base (no alignment)", "dcr": "DCR alone (refined, before STL)",
                "stl": "STL", "stl-aug": "STL-aug", "surgical": "Surgical",
                "scans": "SCANS", "dcr+stl": "DCR + STL (ours)", "dcr+stl-aug": "DCR + STL-aug"}
XSTEST_SAFE = ("xstest", "xstest-safe")
XSTEST_UNSAFE = ("xstest", "xstest-unsafe")


@dataclass(frozen=True)
class Column:
    """One table column: which records feed it (any of ``benchmarks``, one split and metric)."""

    label: str
    group: str  # over-refusal | safety | general | quality
    benchmarks: tuple[str, ...]
    split: str
    metric: str
    in_avg: bool = False
    optional: bool = False  # shown only when some method has a value

    @property
    def key(self) -> str:
        return f"{self.group}:{self.label}"


OVER_REFUSAL = (
    Column("XSTest in-distribution", "over-refusal", XSTEST_SAFE, "in-distribution",
           "compliance_rate"),
    Column("XSTest held-out", "over-refusal", XSTEST_SAFE, "held-out", "compliance_rate"),
    Column("XSTest all safe", "over-refusal", XSTEST_SAFE, "all", "compliance_rate", in_avg=True, optional=True),
    Column("CoCoNot", "over-refusal", ("coconot",), "all", "compliance_rate", in_avg=True),
    Column("OR-Bench-Hard", "over-refusal", ("or-bench",), "all", "compliance_rate", in_avg=True),
    Column("OKTest", "over-refusal", ("oktest",), "all", "compliance_rate", in_avg=True),
    Column("PHTest", "over-refusal", ("phtest",), "all", "compliance_rate", in_avg=True),
)
SAFETY = (
    Column("I-Malicious", "safety", ("malicious-instructions",), "all", "defense_success_rate", in_avg=True),
    Column("I-CoNa", "safety", ("cona",), "all", "defense_success_rate", in_avg=True),
    Column("I-Controversial", "safety", ("controversial",), "all", "defense_success_rate", in_avg=True),
    Column("HarmfulQ", "safety", ("harmfulq",), "all", "defense_success_rate", in_avg=True),
    Column("AdvBench", "safety", ("advbench",), "all", "defense_success_rate", in_avg=True),
    Column("XSTest unsafe", "safety", XSTEST_UNSAFE, "all", "defense_success_rate", optional=True),
    Column("Safety pooled (938)", "safety", ("safety",), "all", "defense_success_rate", optional=True),
)
GENERAL = tuple(Column(label, "general", (name,), "all", "accuracy", optional=True) for name, label in (
    ("mmlu", "MMLU"), ("arc-easy", "ARC-e"), ("arc-challenge", "ARC-c"), ("openbookqa", "OpenBookQA"),
    ("piqa", "PIQA")))
QUALITY = (Column("AlpacaEval win rate", "quality", ("alpaca-eval",), "all", "win_rate", optional=True),)
AVG_LABEL = {"over-refusal": "Over-refusal avg", "safety": "Safety avg"}
HELDOUT = next(c for c in OVER_REFUSAL if c.split == "held-out")
NOT_MEASURED = "not measured"
AVERAGES_NOTE = ("Over-refusal avg = mean of XSTest (all safe prompts), CoCoNot, OR-Bench, OKTest and PHTest where "
                 "measured; safety avg = mean of the five safety sets where measured (each average is taken per "
                 "seed, then mean ± std).")
SPLIT_NOTES = {
    True: "XSTest in-distribution prompts are used by refinement (DCR) and STL-aug training; XSTest held-out "
          "prompts are never trained on.",
    False: "XSTest is in-distribution for this run (xstest_heldout_frac = 0, the paper's setting): refinement (DCR) "
           "and STL-aug train on the XSTest safe prompts (all 250 unless a size limit caps them), none is held "
           "out, and there is no held-out column.",
}


def _sort_methods(methods: Iterable[str]) -> list[str]:
    return sorted(set(methods), key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m))


def _pick(rows: list[dict[str, Any]], col: Column) -> dict[str, Any] | None:
    """The record of ``col`` among one (model, method, seed)'s rows (the first benchmark that has one)."""
    for bench in col.benchmarks:
        for r in reversed(rows):
            if r.get("benchmark") == bench and r.get("split", "all") == col.split and r.get("metric") == col.metric:
                return r
    return None


def per_seed(rows: list[dict[str, Any]], columns: tuple[Column, ...]) -> dict[tuple[str, str], dict[int, dict]]:
    """``{(model, method): {seed: {column key or avg key: value}}}``, averages computed within each seed. Seeds
    whose records come from a stage an earlier seed already gave (the base model: one evaluation, used by every
    seed) count once, so its row shows one measurement, not a spread of zero over copies."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("metric") != "missing" and "method" in r:
            groups.setdefault((str(r.get("model")), str(r["method"]), int(r.get("seed", 0))), []).append(r)
    out: dict[tuple[str, str], dict[int, dict]] = {}
    seen: set[tuple[str, str, str]] = set()
    for (model, method, seed), part in sorted(groups.items()):
        stage = str(part[0].get("stage", ""))
        if stage and all(str(r.get("stage", "")) == stage for r in part):
            if (model, method, stage) in seen:
                continue
            seen.add((model, method, stage))
        vals: dict[str, float] = {}
        for col in columns:
            rec = _pick(part, col)
            if rec is not None and rec.get("value") is not None and not math.isnan(float(rec["value"])):
                vals[col.key] = float(rec["value"])
        for group, label in AVG_LABEL.items():
            members = [vals[c.key] for c in columns if c.group == group and c.in_avg and c.key in vals]
            if members:
                vals[f"{group}:{label}"] = sum(members) / len(members)
        out.setdefault((model, method), {})[seed] = vals
    return out


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _unmeasured(rows: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """``{(model, method): benchmarks}`` that an evaluation reported as missing (not measured)."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if r.get("metric") == "missing" and "method" in r:
            out.setdefault((str(r.get("model")), str(r["method"])), set()).add(str(r.get("benchmark")))
    return out


def shown_columns(rows: list[dict[str, Any]], heldout: bool = True) -> list[Column]:
    """Table 1 columns plus the two averages; optional columns only when some record feeds them or an evaluation
    reported their benchmark as not measured; no held-out XSTest column when nothing was held out."""
    present = {(r.get("benchmark"), r.get("split", "all"), r.get("metric")) for r in rows}
    absent = set().union(*_unmeasured(rows).values())
    out: list[Column] = []
    for group in (OVER_REFUSAL, SAFETY, GENERAL, QUALITY):
        cols = [c for c in group if (heldout or c != HELDOUT) and (not c.optional or any(
            (b, c.split, c.metric) in present or b in absent for b in c.benchmarks))]
        out.extend(cols)
        if group[0].group in AVG_LABEL:
            label = AVG_LABEL[group[0].group]
            out.append(Column(label, group[0].group, (), "all", "avg"))
    return out


def table1(rows: list[dict[str, Any]], heldout: bool = True, styled: frozenset[str] = frozenset(),
           styled_note: str | None = None) -> list[Table]:
    """One table per model: rows = methods, columns = Table 1 (compliance, defense success, general, quality).

    ``heldout=False`` (xstest_heldout_frac = 0): no held-out XSTest column, and a note that XSTest is
    in-distribution. ``styled``: benchmarks a refine source made in-distribution style; their headers say so and
    ``styled_note`` explains it. A cell without a value whose benchmark the evaluation reported missing reads "not
    measured".
    """
    columns = shown_columns(rows, heldout)
    data = per_seed(rows, tuple(c for c in columns if c.metric != "avg"))
    unmeasured = _unmeasured(rows)
    tables = []
    for model in sorted({m for m, _ in data}):
        methods = _sort_methods(meth for m, meth in data if m == model)
        header = ["method", "seeds", *[_header(c) + (" (in-dist. style)" if styled & set(c.benchmarks) else "")
                                       for c in columns]]
        body = []
        for method in methods:
            seeds = data[(model, method)]
            gone = unmeasured.get((model, method), set())
            cells = [fmt([v[c.key] for v in seeds.values() if c.key in v]) for c in columns]
            cells = [NOT_MEASURED if cell == "—" and gone & set(c.benchmarks) else cell
                     for c, cell in zip(columns, cells)]
            body.append([METHOD_NAMES.get(method, method), str(len(seeds)), *cells])
        model_rows = [r for r in rows if str(r.get("model")) == model]
        body.append(["judge · agreement with people", "", *[column_judge(model_rows, c) for c in columns]])
        extra, paper_note = paper_rows(model, methods, [c.key for c in columns], METHOD_NAMES)
        body.extend(extra)
        tables.append(Table(
            title=f"Table 1 layout: {model}", header=header, rows=body,
            notes=["C = compliance rate (1 - refusal rate) on benign, seemingly toxic prompts; D = defense success "
                   "rate (fraction of unsafe prompts answered safely); Acc = accuracy; AlpacaEval win rate = "
                   "share of answers an LLM annotator prefers to the reference's (the STL model's by default). "
                   "Values are fractions, mean ± sample std over seeds; — = no record; not measured = the "
                   "evaluation could not measure it (reason under Missing benchmarks).",
                   f"{SPLIT_NOTES[heldout]} {AVERAGES_NOTE}",
                   "Last row: the judge behind each column and its agreement with human labels (Cohen's kappa on "
                   "XSTest completions, see `dcr judge --calibrate` and docs/judges.md); uncalibrated = never "
                   "measured.", *([styled_note] if styled_note else []), *([paper_note] if paper_note else [])]))
    return tables


def degenerate_table(rows: list[dict[str, Any]], heldout: bool = True) -> list[Table]:
    """Per model, the share of answers the refusal judge read as degenerate text (loops, fence or number runs:
    ``dcr.judges.degenerate``), in Table 1's over-refusal and safety columns; none when no record has one."""
    if not any(r.get("metric") == "degenerate_rate" for r in rows):
        return []
    columns = tuple(Column(c.label, c.group, c.benchmarks, c.split, "degenerate_rate", optional=c.optional)
                    for c in (*OVER_REFUSAL, *SAFETY) if heldout or c != HELDOUT)
    present = {(r.get("benchmark"), r.get("split", "all")) for r in rows if r.get("metric") == "degenerate_rate"}
    columns = tuple(c for c in columns if any((b, c.split) in present for b in c.benchmarks))
    data = per_seed(rows, columns)
    out = []
    for model in sorted({m for m, _ in data}):
        body = [[METHOD_NAMES.get(method, method), str(len(data[(model, method)])),
                 *[fmt([v[c.key] for v in data[(model, method)].values() if c.key in v]) for c in columns]]
                for method in _sort_methods(meth for m, meth in data if m == model)]
        out.append(Table(
            title=f"Degenerate answers: {model}", header=["method", "seeds", *[c.label for c in columns]], rows=body,
            notes=["Share of answers that are neither compliance nor refusal (a loop, a fence or number run, letter "
                   "soup, chat-role lines: dcr.judges.degenerate), mean ± std over seeds. Table 1 counts them as "
                   "neither: they lower compliance and, on unsafe prompts, are no defense. Text that is fluent but "
                   "unrelated to the prompt is not detected."]))
    return out


def column_judge(rows: list[dict[str, Any]], col: Column) -> str:
    """The judge(s) of a column's records with their measured agreement; blank for judge-free columns."""
    from dcr.report.judging import agreement_short

    judges = sorted({str(r["judge"]) for r in rows if _pick([r], col) and r.get("judge")})
    return "; ".join(f"{j} · {agreement_short(j)}" for j in judges)


def _header(col: Column) -> str:
    prefix = {"over-refusal": "C", "safety": "D", "general": "Acc", "quality": ""}[col.group]
    return f"{prefix}: {col.label}" if prefix and col.metric != "avg" else col.label


def missing(rows: list[dict[str, Any]], requested: list[str] | None = None,
            heldout: bool = True) -> list[tuple[str, str]]:
    """(Table 1 column, reason) for every column without a single value (optional columns, e.g. quality, only
    when an evaluation reported them missing; the held-out XSTest column only when something was held out)."""
    reasons = {str(r["benchmark"]): str(r.get("reason")) for r in rows if r.get("metric") == "missing"}
    columns = [c for c in (*OVER_REFUSAL, *SAFETY, *QUALITY) if (heldout or c != HELDOUT)
               and (not c.optional or any(b in reasons for b in c.benchmarks))]
    out = []
    for col in columns:
        if any(_pick([r], col) for r in rows):
            continue
        reason = next((reasons[b] for b in col.benchmarks if b in reasons), None)
        if reason is None:
            asked = requested is not None and any(b in requested for b in col.benchmarks)
            reason = "requested but no records were produced" if asked else \
                "not evaluated: not among the experiment's benchmarks"
        out.append((col.label, reason))
    return out


SIZE_FIELDS = {
    "refine": ("limit", "epochs", "layer", "batch_size", "lr", "toxic_ratio"),
    "align": ("method", "n_general", "n_safety", "limit", "epochs", "micro_batch", "grad_accum", "teacher",
              "teacher_max_new_tokens", "track_every", "track_n"),
    "steer": ("method", "n_directions", "w_f", "w_h", "multiplier"),
    "evaluate": ("benchmarks", "limit", "max_new_tokens", "judge", "safety_judge"),
}


def sizes_table(plan: dict[str, Any]) -> Table:
    """Model and data sizes of each distinct stage configuration (from plan.json)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for node in plan.get("nodes", []):
        cfg = node.get("config", {})
        desc = ", ".join(f"{k}={_short(cfg[k])}" for k in SIZE_FIELDS.get(node["stage"], ()) if k in cfg)
        models = ", ".join(sorted({u["model"] for u in node.get("uses", [])}))
        seen.setdefault((node["stage"], desc), []).append(models)
    body = [[stage, ", ".join(sorted(set(ms))), desc] for (stage, desc), ms in seen.items()]
    return Table(title="Model and data sizes", header=["stage", "models", "settings"], rows=body, notes=[])


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]"
    return str(value)


def cost_table(run_dir: Path, plan: dict[str, Any]) -> Table:
    """Wall time and peak memory of every stage, from its manifest (the paper's Table 2, per stage)."""
    body = []
    for node in plan.get("nodes", []):
        man = read_manifest(run_dir / node["dir"]) or {}
        status = man.get("status", "not run")
        methods = ", ".join(sorted({u["method"] for u in node.get("uses", [])}))
        procs = int((man.get("host") or {}).get("processes") or 1)
        rss = _num(man.get("peak_rss_mb"), "{:.0f}")
        body.append([node["label"], methods, status, _wall(man), rss + (f" (rank 0 of {procs})" if procs > 1 else ""),
                     _num(man.get("peak_cuda_mb"), "{:.0f}")])
    return Table(title="Cost per stage (Table 2 layout)",
                 header=["stage", "used by", "status", "wall time (s)", "peak RSS (MB)", "peak CUDA (MB)"],
                 rows=body, notes=["Times are from each stage's manifest (the run that produced it, also when a "
                                   "later run skipped it); a stage that was interrupted and resumed shows the sum "
                                   "over its attempts (a killed attempt counted up to its last log line). Peak "
                                   "RSS is sampled process memory (of the last attempt; of the main process "
                                   "only when the stage ran as several, e.g. evaluate_processes: the machine "
                                   "held about that times the process count); peak CUDA is "
                                   "torch.cuda.max_memory_allocated (0 on CPU)."])


def _wall(man: dict[str, Any]) -> str:
    """Wall time of a stage over all its attempts, e.g. ``2407.6 (2 attempts)``."""
    attempts = len(man.get("attempts", [])) + 1
    total = man.get("wall_time_total_s", man.get("wall_time_s"))
    return _num(total, "{:.1f}") + (f" ({attempts} attempts)" if attempts > 1 and total is not None else "")


def _num(value: Any, pattern: str) -> str:
    return "—" if value is None else pattern.format(float(value))
