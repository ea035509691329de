"""The report's judge tables: which judge made each column, its measured agreement with people, and how often
two configured judges disagree."""

from __future__ import annotations

from typing import Any

from dcr.judges import calibration_of
from dcr.report.render import Table
from dcr.report.tables import GENERAL, OVER_REFUSAL, QUALITY, SAFETY, _pick, _sort_methods

UNCALIBRATED = "uncalibrated"


def _ci(entry: dict[str, Any]) -> str:
    return f"{entry['value']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def agreement_short(judge: str) -> str:
    """``κ 0.81`` for a calibrated judge, else ``uncalibrated``."""
    cal = calibration_of(judge)
    return UNCALIBRATED if cal is None else f"κ {cal['kappa']['value']:.2f}"


def agreement_long(judge: str) -> str:
    cal = calibration_of(judge)
    if cal is None:
        return UNCALIBRATED
    return (f"κ {_ci(cal['kappa'])}, agreement {_ci(cal['agreement'])} (n {cal['n']} human-labelled XSTest "
            "completions of GPT-4, Llama-2-70b-chat, Mistral-7B)")


def judges_table(rows: list[dict[str, Any]]) -> Table:
    """Which judge produced each column, on how many items, and its measured agreement with people."""
    body = []
    for col in (*OVER_REFUSAL, *SAFETY, *GENERAL, *QUALITY):
        recs = [r for r in rows if _pick([r], col)]
        if not recs:
            continue
        judges = sorted({str(r.get("judge") or "—") for r in recs})
        ns = sorted({int(r.get("n") or 0) for r in recs})
        agree = "; ".join(agreement_long(j) for j in judges if j != "—") or "—"
        body.append([col.label, col.metric, ", ".join(judges), ", ".join(map(str, ns)), agree])
    return Table(title="Judges, sample sizes and agreement with people per column",
                 header=["column", "metric", "judge", "n items", "agreement with human labels (95% CI)"],
                 rows=body, notes=[
                     "keyword = dcr's refusal-phrase judge; prefix = XSTest's plain prefix matcher; guard:MODEL = a "
                     "Llama-Guard style classifier (the paper's safety judge is Llama-Guard-3-8B).",
                     "Agreement is measured against human labels of XSTest completions (full or partial refusal "
                     "= refusal) with `dcr judge --calibrate`; a judge never measured shows 'uncalibrated', and "
                     "its rates carry an unknown error."])


def disagreement_table(rows: list[dict[str, Any]]) -> Table | None:
    """How often two configured judges disagree on the same completions, per benchmark and method."""
    recs = [r for r in rows if r.get("metric") == "judge_disagreement"]
    if not recs:
        return None
    body = []
    for method in _sort_methods(str(r.get("method")) for r in recs):
        for r in sorted((x for x in recs if str(x.get("method")) == method),
                        key=lambda x: (str(x.get("benchmark")), str(x.get("judge")), x.get("seed", 0))):
            body.append([method, str(r.get("seed", "")), str(r["benchmark"]), str(r["judge"]),
                         f"{float(r['value']):.3f}", str(r["n"])])
    return Table(title="Judge disagreement", header=["method", "seed", "benchmark", "judges", "disagreement", "n"],
                 rows=body, notes=["Fraction of the same completions on which the two judges reach different "
                                   "verdicts (refusal judge vs an extra judge, or refused vs judged safe on unsafe "
                                   "prompts). A high rate means the column depends on the choice of judge."])
