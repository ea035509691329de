"""Leave-one-model-out scores of refusal judges on the calibration data (``dcr judge --calibrate --lomo``).

Each rotation holds out one group (model) of the calibration data and scores every judge on it:

- ``keyword``: ``KeywordJudge(holdout=MODEL)``, without the rules written while looking at that model's labels
  (see ``dcr.judges.keyword_rules``);
- any other spec (``prefix``, ``http:...``) has nothing fitted to these labels and is scored as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcr.errors import DataError
from dcr.judges.base import Judge, get_judge, parse_spec
from dcr.judges.calibrate import load_items, run_judge, score, score_difference
from dcr.judges.metrics import fmt

DEFAULT_SPECS = ("keyword", "prefix")


def rotation_judge(spec: str, holdout: str) -> Judge:
    """The judge ``spec`` as it may be scored on group ``holdout`` (no rule of it written from that group)."""
    kind, _ = parse_spec(spec)
    return get_judge(spec, holdout=holdout) if kind == "keyword" else get_judge(spec)


def leave_one_model_out(data: str | Path | None = None, specs: Sequence[str] = DEFAULT_SPECS,
                        resamples: int = 1000, seed: int = 0, baseline: str = "prefix") -> dict[str, Any]:
    """``{"rotations": {group: {"n", "train", spec: metrics, "difference": {spec: spec - baseline}}}, ...}``.

    ``difference`` is paired: both judges are scored on the same bootstrap samples of the held-out rows.
    """
    items = load_items(data)
    groups = list(dict.fromkeys(it.group for it in items))
    if len(groups) < 2:
        raise DataError(data or "calibration data", f"leave-one-model-out needs at least two groups, got {groups}",
                        "pass a directory with one labelled CSV per model (or a CSV with a model column)")
    rotations: dict[str, Any] = {}
    for g in groups:
        test = [it for it in items if it.group == g]
        entry: dict[str, Any] = {"n": len(test), "train": [h for h in groups if h != g]}
        flags = {spec: run_judge(rotation_judge(spec, g), test)[1] for spec in specs}
        for spec in specs:
            entry[spec] = score(test, flags[spec], resamples, seed)
        if baseline in flags:
            entry["difference"] = {spec: score_difference(test, flags[spec], flags[baseline], resamples, seed)
                                   for spec in specs if spec != baseline}
        rotations[g] = entry
    return {"specs": list(specs), "baseline": baseline, "rotations": rotations,
            "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "difference": "paired"}}


def beats(report: dict[str, Any], spec: str, baseline: str = "prefix",
          metrics: Sequence[str] = ("agreement", "kappa")) -> dict[str, bool]:
    """Per rotation: does ``spec`` have a higher point estimate than ``baseline`` on every metric?"""
    return {g: all(r[spec][m]["value"] > r[baseline][m]["value"] for m in metrics)
            for g, r in report["rotations"].items()}


def lomo_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows: held-out group, n, judge, agreement, kappa, F1 (with intervals)."""
    rows = []
    for g, r in report["rotations"].items():
        for spec in report["specs"]:
            m = r[spec]
            rows.append([g, str(r["n"]), spec, fmt(m["agreement"]), fmt(m["kappa"]), fmt(m["f1"])])
        for spec, d in r.get("difference", {}).items():
            rows.append([g, str(r["n"]), f"{spec} - {report['baseline']}", fmt(d["agreement"]), fmt(d["kappa"]),
                         fmt(d["f1"])])
    return rows
