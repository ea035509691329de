"""The report's warning for refined models that could no longer write (issue 28, item 2).

A refine stage run with ``retention_action: warn`` keeps a model whose held-out NLL rose past
``retention_max_rise`` (``dcr.refine.retention``). Its DCR and DCR + STL numbers are then computed on a model that may
not write, and the report must say so before any table: :func:`retention_warnings` reads every finished refine stage's
``metrics.json`` ``retention`` and names the failed ones, with the methods and seeds built on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcr.refine.retention import rise_text
from dcr.report.paired import finished_files
from dcr.report.render import Block, Para


def failed_retention(run_dir: Path, plan: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(plan node, its metrics.json retention) of every finished refine stage whose retention check failed."""
    found = ((node, metrics.get("retention") or {}) for node, metrics in
             finished_files(run_dir, plan, "metrics.json", "refine"))
    return [(node, retention) for node, retention in found if retention.get("ok") is False]


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
