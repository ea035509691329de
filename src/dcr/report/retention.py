"""The report's warning for refined models that could no longer write (issue 28, item 2).

A refine stage run with ``retention_action: warn`` keeps a model whose held-out NLL rose past
``retention_max_rise`` (``dcr.refine.retention``). Its DCR and DCR + STL numbers are then computed on a model that may
not write, and the report must say so before any table: :func:`retention_warnings` reads every finished refine stage's
``metrics.json`` ``retention`` and names the failed ones, with the methods and seeds built on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcr.io import read_json
from dcr.refine.retention import rise_text
from dcr.report.paired import EVALUATED  # plan statuses of a stage that finished
from dcr.report.render import Block, Para


def failed_retention(run_dir: Path, plan: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(plan node, its metrics.json retention) of every finished refine stage whose retention check failed."""
    out = []
    for node in plan.get("nodes", []):
        path = run_dir / str(node.get("dir", "")) / "metrics.json"
        if node.get("stage") != "refine" or node.get("status") not in EVALUATED or not path.is_file():
            continue
        retention = read_json(path).get("retention") or {}
        if retention.get("ok") is False:
            out.append((node, retention))
    return out


def retention_warnings(run_dir: Path, plan: dict[str, Any]) -> list[Block]:
    """One warning paragraph per refined model that failed its retention check (none when all passed)."""
    blocks: list[Block] = []
    for node, r in failed_retention(run_dir, plan):
        uses = sorted({(str(u.get("method")), u.get("seed")) for u in node.get("uses", [])}, key=str)
        used = ", ".join(f"{m} (seed {s})" for m, s in uses) or "the refined methods"
        model = (node.get("config") or {}).get("model", "?")
        blocks.append(Para(
            f"**Warning: the refined model of {node.get('dir')} ({model}) did not keep its language:** "
            f"{rise_text(r)}, retention_action {r.get('action', '?')}; greedy answers {r.get('answers_before')} -> "
            f"{r.get('answers_after')} "
            f"(retention.jsonl). The rows of {used} come from it: they are not a result about DCR, and text that is "
            "fluent but unrelated to the prompt counts as compliance under the keyword judge (judge "
            "keyword+unrelated:smollm2-135m reads it)."))
    return blocks
