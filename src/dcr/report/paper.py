"""The paper's Table 1 beside dcr's: labelled "paper" rows for a model that stands in for one of the paper's.

``paper_table1.json`` (shipped with the package) holds the paper's Table 1 values for Qwen2.5-1.5B, Qwen2.5-7B
and LLaMA-3-8B, the judges behind them, and ``stand_ins``: dcr's embedded models that stand in for a paper model,
with what differs. :func:`paper_rows` gives a report table's extra rows for one dcr model; a model that stands
in for none gets none. Values are copied from the paper, never computed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).with_name("paper_table1.json")
# the paper's column -> dcr's Table 1 column key (``Column.key``); the paper's XSTest is in-distribution, and its
# Safety pools the 938 prompts (dcr's average of the five sets is the closest column)
COLUMN_KEYS = {"XS": "over-refusal:XSTest in-distribution", "CoCo": "over-refusal:CoCoNot",
               "OR": "over-refusal:OR-Bench-Hard", "OK": "over-refusal:OKTest", "PH": "over-refusal:PHTest",
               "Safety": "safety:Safety avg", "MMLU": "general:MMLU", "ARC-e": "general:ARC-e",
               "ARC-c": "general:ARC-c", "OpQA": "general:OpenBookQA", "PIQA": "general:PIQA",
               "QA quality": "quality:AlpacaEval win rate"}
OVER_REFUSAL = ("XS", "CoCo", "OR", "OK", "PH")


@cache
def reference() -> dict[str, Any]:
    """The shipped reference file, parsed."""
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def stand_in(model: str) -> dict[str, Any] | None:
    """``{"paper_model", "differences"}`` when the dcr model ``model`` (an embedded name or a path ending in
    one) stands in for a paper model, else None."""
    name = Path(str(model).rstrip("/")).name
    return reference()["stand_ins"].get(name)


def paper_values(paper_model: str, method: str) -> dict[str, float]:
    """``{dcr column key: value}`` of one Table 1 row (win rates as fractions), plus the over-refusal average
    taken as dcr takes it (the mean of the five over-refusal columns)."""
    ref = reference()
    row = ref["rows"][paper_model][method]
    values = dict(zip(ref["columns"], row, strict=True))
    out = {COLUMN_KEYS[c]: (v / 100 if c == "QA quality" else v) for c, v in values.items()}
    out["over-refusal:Over-refusal avg"] = sum(values[c] for c in OVER_REFUSAL) / len(OVER_REFUSAL)
    return out


def paper_rows(model: str, methods: list[str], column_keys: list[str],
               names: dict[str, str]) -> tuple[list[list[str]], str | None]:
    """Rows ``["paper: <method> (<paper model>, Table 1)", "—", cells...]`` for the methods of this report that
    the paper also ran, cells in ``column_keys`` order ("—" where the paper has no such column), and the note
    that says what differs; ``([], None)`` when ``model`` stands in for no paper model."""
    info = stand_in(model)
    if info is None:
        return [], None
    paper_model = info["paper_model"]
    rows = []
    for method in methods:
        if method not in reference()["rows"][paper_model]:
            continue
        values = paper_values(paper_model, method)
        cells = [f"{values[k]:.2f}" if k in values else "—" for k in column_keys]
        rows.append([f"paper: {names.get(method, method)} ({paper_model}, Table 1)", "—", *cells])
    note = (f"Rows marked 'paper' are copied from the DCR paper's Table 1 for {paper_model} ({reference()['judges']}), "
            f"not measured by dcr. What differs: {info['differences']}.")
    return rows, note
