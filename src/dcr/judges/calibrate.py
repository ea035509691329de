"""Calibrate a refusal judge against human labels (``dcr judge --calibrate``); see ``docs/judges.md``.

Data: a directory of labelled CSV files (default ``judge-calibration`` in the data directory, XSTest v2 completions
of three models with two annotators' final labels), or one CSV. Each file needs ``prompt``, ``completion``
and ``label`` (or XSTest's ``final_label``), one of ``1_full_compliance`` / ``2_full_refusal`` /
``3_partial_refusal`` (with or without the digit), plain ``refusal`` / ``compliance``, or ``degenerate`` (loops, word
salad, text unrelated to the prompt: dcr's third outcome, not a refusal; XSTest has no such class). Each file of a
directory is one *group* (a model); a single CSV is grouped by its ``model`` column when it has one.

Human refusal = full or partial refusal. Per group and overall (bootstrap stratified by group) the judge and
XSTest's plain prefix matcher (``prefix``, the baseline) get agreement, precision / recall / F1 for refusal and
Cohen's kappa with 95% percentile-bootstrap intervals, a confusion table (human class x judge label) and a
CSV of the most instructive disagreements (see :func:`pick_disagreements`).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcr.data import readers
from dcr.errors import DataError, DcrError
from dcr.io import atomic_open, write_json, write_table
from dcr.judges.base import Judge, get_judge, outcome
from dcr.judges.metrics import bootstrap_metrics, paired_difference, rounded
from dcr.models import sha256_file

BASELINE = "prefix"
CLASSES = {
    "1_full_compliance": "full_compliance", "full_compliance": "full_compliance", "compliance": "compliance",
    "2_full_refusal": "full_refusal", "full_refusal": "full_refusal", "refusal": "refusal",
    "3_partial_refusal": "partial_refusal", "partial_refusal": "partial_refusal",
    "degenerate": "degenerate",
}
REFUSAL_CLASSES = ("full_refusal", "partial_refusal", "refusal")
# what the pipeline counts (dcr.judges.base.outcome); a human label is never "no verdict", a judge's unparsed reply is
OUTCOMES = ("compliance", "refusal", "degenerate", "no verdict")
DEFAULT_OUT = Path("calibration_disagreements.csv")
DISAGREEMENT_COLUMNS = ("rank", "group", "id", "error", "human", "judge_label", "prefix_label", "why", "prompt",
                        "completion")


@dataclass(frozen=True)
class Item:
    """One human-labelled completion."""

    group: str
    id: str
    prompt: str
    completion: str
    human: str  # a value of CLASSES

    @property
    def refusal(self) -> bool:
        return self.human in REFUSAL_CLASSES


def human_outcome(label: str) -> str:
    """The outcome (:data:`OUTCOMES`) of a human label (any key of :data:`CLASSES`): full and partial refusals are
    refusals, ``degenerate`` stays itself, the rest is compliance."""
    cls = CLASSES[label.strip().lower()]
    return "degenerate" if cls == "degenerate" else "refusal" if cls in REFUSAL_CLASSES else "compliance"


def judge_outcome(judge: Judge, label: str) -> str:
    """The outcome (:data:`OUTCOMES`) of a judge's label, as the pipeline counts it (a missing verdict disagrees
    with every human label)."""
    return outcome(label, judge.positive(label))


@dataclass
class Calibration:
    """What :func:`calibrate` returns: the JSON-ready ``report`` and the chosen ``disagreements`` rows."""

    report: dict[str, Any]
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def default_data() -> Path:
    """``judge-calibration`` in the data directory (``$DCR_DATA_DIR``, else the vendored copy)."""
    from dcr.data.registry import data_dir

    return data_dir() / "judge-calibration"


def _group_names(paths: Sequence[Path]) -> list[str]:
    """File stems without their shared prefix cut at ``_``/``-`` (``xstest_v2_completions_gpt4`` -> ``gpt4``)."""
    stems = [p.stem for p in paths]
    if len(stems) < 2:
        return stems
    common = os.path.commonprefix(stems)
    cut = max(common.rfind("_"), common.rfind("-")) + 1
    names = [s[cut:] or s for s in stems]
    return names if len(set(names)) == len(names) else stems


def _read_file(path: Path, group: str, by_model: bool) -> list[Item]:
    """The labelled rows of one CSV; ``by_model``: a non-empty ``model`` column names each row's group."""
    rows, cols = readers.read_csv_table(path)
    label_col = "label" if "label" in cols else "final_label" if "final_label" in cols else None
    missing = [c for c in ("prompt", "completion") if c not in cols] + ([] if label_col else ["label"])
    if missing:
        raise DataError(path, f"no column {', '.join(map(repr, missing))} (columns: {', '.join(cols)})",
                        "give the CSV the columns prompt, completion and label")
    if not rows:
        raise DataError(path, "no data rows", "add labelled completions")
    items = []
    for i, row in enumerate(rows, start=2):
        raw = (row[label_col] or "").strip().lower()
        if raw not in CLASSES:
            raise DataError(path, f"label {row[label_col]!r} is not one of {', '.join(CLASSES)}",
                            "fix the label column", row=i)
        name = ((row.get("model") or "").strip() if by_model else "") or group
        readers.require_filled(path, row, ("prompt", "completion", *(["id"] if "id" in cols else [])), i)
        items.append(Item(name, row["id"].strip() if "id" in cols else str(i - 1), row["prompt"],
                          row["completion"], CLASSES[raw]))
    return items


def data_files(data: str | Path | None = None) -> list[Path]:
    """The CSV files of ``data`` (a directory's ``*.csv``, sorted, or one ``.csv``); default data if None."""
    path = Path(data) if data is not None else default_data()
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise DataError(path, "no .csv files in the directory", "pass a directory of labelled CSV files")
        return files
    if path.suffix.lower() != ".csv":
        raise DataError(path, "calibration data must be a directory or a .csv file",
                        "pass a CSV with columns prompt, completion, label")
    if not path.is_file():
        raise DataError(path, "file not found", "check the path of the labelled CSV (or directory)")
    return [path]


def load_items(data: str | Path | None = None) -> list[Item]:
    """Every labelled row of ``data`` (see the module docstring), grouped by file or ``model`` column."""
    files = data_files(data)
    names = _group_names(files)
    return [item for path, name in zip(files, names) for item in _read_file(path, name, len(files) == 1)]


def run_judge(judge: Judge, items: Sequence[Item]) -> tuple[list[str], list[bool]]:
    """(labels, refusal booleans) of ``judge`` on ``items``; it must measure refusal."""
    if judge.measures != "refusal":
        raise DcrError(f"judge {judge.name!r} measures {judge.measures!r}, not refusal, so it cannot be calibrated "
                       "against refusal labels. Fix: calibrate a keyword, prefix or http judge")
    pairs = judge.judge_with_labels([it.prompt for it in items], [it.completion for it in items])
    return [p[0] for p in pairs], [p[1] for p in pairs]


def score(items: Sequence[Item], flags: Sequence[bool], resamples: int = 1000,
          seed: int = 0) -> dict[str, dict[str, float | None]]:
    """Metrics with intervals, stratified by group (rounded, JSON-ready)."""
    human = [it.refusal for it in items]
    return rounded(bootstrap_metrics(human, flags, [it.group for it in items], resamples, seed))


def score_difference(items: Sequence[Item], flags_a: Sequence[bool], flags_b: Sequence[bool], resamples: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, float | None]]:
    """Judge a minus judge b on the same (stratified) bootstrap samples (rounded, JSON-ready)."""
    human = [it.refusal for it in items]
    return rounded(paired_difference(human, flags_a, flags_b, [it.group for it in items], resamples, seed))


def confusion_table(items: Sequence[Item], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{human class: {judge label: count}}``."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for it, label in zip(items, labels):
        table[it.human][label] += 1
    order = [c for c in dict.fromkeys(CLASSES.values()) if c in table]
    return {h: dict(sorted(table[h].items())) for h in order}


def explain(judge: Judge, item: Item) -> str:
    """The judge's reason for its label, when it can give one (the keyword judge's matched rule)."""
    fn = getattr(judge, "explain", None)
    return str(fn(item.prompt, item.completion) or "") if callable(fn) else ""


def pick_disagreements(items: Sequence[Item], flags: Sequence[bool], top: int = 20) -> list[int]:
    """Indices of the ``top`` most instructive rows where the judge and the people disagree.

    Ranking: disagreements are put in cells by (error direction, group); each cell is ordered with full
    (unambiguous) human labels before partial refusals, then shortest completion first (quick to read); the
    cells are then taken round-robin, so both error directions and every group are covered.
    """
    cells: dict[tuple[bool, str], list[int]] = defaultdict(list)
    for i, (it, flag) in enumerate(zip(items, flags)):
        if flag != it.refusal:
            cells[(it.refusal, it.group)].append(i)
    queues = [sorted(cells[key], key=lambda i: (items[i].human == "partial_refusal", len(items[i].completion), i))
              for key in sorted(cells, key=lambda k: (not k[0], k[1]))]
    picked: list[int] = []
    while len(picked) < top and any(queues):
        for q in queues:
            if q and len(picked) < top:
                picked.append(q.pop(0))
    return picked


def _disagreement_rows(items: Sequence[Item], picked: Sequence[int], judge: Judge, labels: Sequence[str],
                       base_labels: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for rank, i in enumerate(picked, start=1):
        it = items[i]
        values = (rank, it.group, it.id, "missed_refusal" if it.refusal else "false_refusal", it.human, labels[i],
                  base_labels[i], explain(judge, it), it.prompt, it.completion)
        rows.append(dict(zip(DISAGREEMENT_COLUMNS, values)))
    return rows


def calibrate(spec: str = "keyword", data: str | Path | None = None, resamples: int = 1000, seed: int = 0,
              top: int = 20, judge: Judge | None = None, **judge_kw: Any) -> Calibration:
    """Score the judge ``spec`` (or an already built ``judge``) and the prefix baseline on human labels."""
    files = data_files(data)
    items = load_items(data)
    judge = judge or get_judge(spec, **judge_kw)
    judges = [judge] if judge.name == BASELINE else [judge, get_judge(BASELINE)]
    runs = {j.name: run_judge(j, items) for j in judges}
    groups = list(dict.fromkeys(it.group for it in items))
    report: dict[str, Any] = {
        "judge": judge.name, "baseline": BASELINE, "human_refusal": "full or partial refusal",
        "data": [{"path": str(p), "sha256": sha256_file(p)} for p in files],
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "interval": "percentile",
                      "overall": "stratified by group"},
        "groups": {}, "confusion": {name: confusion_table(items, run[0]) for name, run in runs.items()},
    }
    for g in [*groups, "overall"]:
        idx = [i for i, it in enumerate(items) if g in ("overall", it.group)]
        sub = [items[i] for i in idx]
        entry: dict[str, Any] = {"n": len(sub), "human_refusals": sum(it.refusal for it in sub)}
        for name, (_, flags) in runs.items():
            entry[name] = score(sub, [flags[i] for i in idx], resamples, seed)
        if judge.name != BASELINE:
            entry["difference"] = score_difference(sub, [runs[judge.name][1][i] for i in idx],
                                                   [runs[BASELINE][1][i] for i in idx], resamples, seed)
        if g == "overall":
            report["overall"] = entry
        else:
            report["groups"][g] = entry
    labels, flags = runs[judge.name]
    picked = pick_disagreements(items, flags, top)
    report["disagreements"] = sum(f != it.refusal for f, it in zip(flags, items))
    return Calibration(report, _disagreement_rows(items, picked, judge, labels, runs[BASELINE][0]))


def metrics_path(out: Path) -> Path:
    """``calibration_disagreements.csv`` -> ``calibration_disagreements.metrics.json``."""
    return out.with_name(f"{out.stem}.metrics.json")


def write_calibration(result: Calibration, out: str | Path = DEFAULT_OUT) -> tuple[Path, Path]:
    """Write the disagreements CSV ``out`` and the metrics JSON beside it; return both paths."""
    out = Path(out)
    if out.suffix.lower() != ".csv" or out.is_dir():
        raise DataError(out, "the disagreements file must be a .csv file path", "pass --out NAME.csv")
    if result.disagreements:
        write_table(out, result.disagreements)
    else:
        with atomic_open(out) as fh:
            fh.write(",".join(DISAGREEMENT_COLUMNS) + "\n")
    report = {**result.report, "disagreements_csv": str(out)}
    write_json(metrics_path(out), report)
    return out, metrics_path(out)
