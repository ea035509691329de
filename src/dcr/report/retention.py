"""The report's warnings for refined models that could no longer write, or stopped answering (issue 28, item 2).

A refine stage run with ``retention_action: warn`` keeps a model whose held-out NLL rose past
``retention_max_rise`` (``dcr.refine.retention``). Its DCR and DCR + STL numbers are then computed on a model that may
not write, and the report must say so before any table: :func:`retention_warnings` reads every finished refine stage's
``metrics.json`` ``retention`` and names the failed ones, with the methods and seeds built on them. A model can also
keep the NLL and stop answering (empty answers, refusals of ordinary instructions): a drop in its complying greedy
answers above ``retention_max_answer_drop`` gets its own warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcr.refine.retention import answers_kept, answers_text, rise_text
from dcr.report.paired import finished_files
from dcr.report.render import Block, Para

Found = list[tuple[dict[str, Any], dict[str, Any]]]


def _retentions(run_dir: Path, plan: dict[str, Any]) -> Found:
    """(plan node, its metrics.json retention, {} without one) of every finished refine stage."""
    return [(node, metrics.get("retention") or {}) for node, metrics in
            finished_files(run_dir, plan, "metrics.json", "refine")]


def _failed(found: Found) -> Found:
    return [(node, r) for node, r in found if r.get("ok") is False]


def _silenced(found: Found) -> Found:
    return [(node, r) for node, r in found if r.get("ok") is True and r.get("answers_before") and not answers_kept(r)]


def failed_retention(run_dir: Path, plan: dict[str, Any]) -> Found:
    """(plan node, its metrics.json retention) of every finished refine stage whose retention check failed."""
    return _failed(_retentions(run_dir, plan))


def _built_on(node: dict[str, Any]) -> tuple[str, str]:
    uses = sorted({(str(u.get("method")), u.get("seed")) for u in node.get("uses", [])}, key=str)
    return ", ".join(f"{m} (seed {s})" for m, s in uses) or "the refined methods", (node.get("config") or {}).get(
        "model", "?")


def silenced(run_dir: Path, plan: dict[str, Any]) -> Found:
    """(plan node, retention) of every finished refine stage that kept its NLL but whose greedy answers to
    ordinary instructions stopped complying (:func:`dcr.refine.retention.answers_kept`)."""
    return _silenced(_retentions(run_dir, plan))


def retention_warnings(run_dir: Path, plan: dict[str, Any]) -> list[Block]:
    """One warning paragraph per refined model that failed its retention check or stopped answering (none when
    all kept both)."""
    blocks: list[Block] = []
    found = _retentions(run_dir, plan)
    for node, r in _silenced(found):
        used, model = _built_on(node)
        blocks.append(Para(
            f"**Warning: the refined model of {node.get('dir')} ({model}) answers fewer ordinary instructions:** "
            f"it kept its language by the NLL check ({r['nll_before']:.3f} -> {r['nll_after']:.3f} nats per token), "
            f"but {answers_text(r)} (retention.jsonl). The rows of {used} start from a model that refuses or says "
            "nothing more often before any safety training: read the refined model's own row (method dcr) before "
            "crediting DCR + STL's refusals to discernment."))
    for node, r in _failed(found):
        used, model = _built_on(node)
        blocks.append(Para(
            f"**Warning: the refined model of {node.get('dir')} ({model}) did not keep its language:** "
            f"{rise_text(r)}, retention_action {r.get('action', '?')}; greedy answers {r.get('answers_before')} -> "
            f"{r.get('answers_after')} "
            f"(retention.jsonl). The rows of {used} come from it: they are not a result about DCR, and text that is "
            "fluent but unrelated to the prompt counts as compliance under the keyword judge (judge "
            "keyword+unrelated:smollm2-135m reads it)."))
    return blocks
