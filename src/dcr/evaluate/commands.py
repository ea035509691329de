"""``dcr evaluate``: the evaluation suite from the command line, with a rich summary table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dcr.config import build_config
from dcr.evaluate.config import EvaluateConfig
from dcr.evaluate.suite import METRICS_FILE, evaluate
from dcr.io import read_json


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def metrics_table(summary: dict[str, Any]) -> Table:
    """One row per (benchmark, kind, split, metric), then one row per missing benchmark with its reason."""
    title = f"dcr evaluate: {summary.get('model')} (limit {summary.get('limit')}, seed {summary.get('seed')})"
    table = Table(title=title)
    for col in ("benchmark", "kind", "split", "metric", "value", "n", "judge"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for name, entry in summary.get("benchmarks", {}).items():
        for m in entry.get("metrics", []):
            table.add_row(name, m["kind"], m["split"], m["metric"], _fmt(m["value"]), str(m["n"]), m.get("judge") or "")
        for note in entry.get("notes", []):
            table.add_row(name, entry.get("kind", ""), "", "note", "", "", note)
    for name, reason in summary.get("missing", {}).items():
        table.add_row(name, "MISSING", "", "", "", "", reason, style="yellow")
    return table


def parse_tags(items: list[str] | None) -> dict[str, str] | None:
    """``["method=dcr", "seed=0"]`` -> ``{"method": "dcr", "seed": "0"}``."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--tag {item!r}: expected KEY=VALUE, e.g. --tag method=dcr")
        out[key.strip()] = val.strip()
    return out


def evaluate_cmd(
    model: str = typer.Option(None, "--model", help="Model: embedded name, HF dir, dcr stage dir, or hub id."),
    benchmark: str = typer.Option(None, "--benchmark", help="NAME[,NAME...]: a registered benchmark, all, "
                                  "over-refusal, safety-all, safety, general, mmlu, arc-easy, arc-challenge, "
                                  "openbookqa, piqa, heldout-nll, alpaca-eval, hf:OWNER/NAME."),
    out: Path = typer.Option(..., "--out", help="Output directory (generations/, metrics.json, results.jsonl)."),
    limit: int = typer.Option(None, "--limit", help="At most N items per benchmark (seeded subsample)."),
    judge: str = typer.Option(None, "--judge", help="Refusal judge: keyword | guard:MODEL | http:URL[#MODEL]."),
    safety_judge: str = typer.Option(None, "--safety-judge", help="Judge of defense success (e.g. guard:MODEL)."),
    steer: str = typer.Option(None, "--steer", help="A `dcr steer` output directory to apply while evaluating."),
    reference: str = typer.Option(None, "--reference", help="alpaca-eval reference: gpt4 | ... | a model."),
    annotator: str = typer.Option(None, "--annotator", help="alpaca-eval annotator: local:MODEL | http:URL[#M]."),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Tokens generated per prompt."),
    batch_size: int = typer.Option(None, "--batch-size", help="Prompts per generation batch."),
    refusal_prob: bool = typer.Option(None, "--refusal-prob/--no-refusal-prob", help="Report A.5 refusal prob."),
    data_dir: str = typer.Option(None, "--data-dir", help="Offline data directory (else $DCR_DATA_DIR)."),
    config: Path = typer.Option(None, "--config", help="YAML config (an `evaluate:` section or top-level fields)."),
    tags: list[str] = typer.Option(None, "--tag", help="KEY=VALUE added to every results record (repeatable)."),
    sets: list[str] = typer.Option(None, "--set", help="Override any field: --set mmlu_shots=5 (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Re-run even if OUT holds a finished run of the same config."),
) -> None:
    """Evaluate over-refusal, safety, general ability, refusal probability and response quality."""
    overrides = {
        "model": model, "benchmarks": benchmark.split(",") if benchmark else None, "limit": limit,
        "judge": judge, "safety_judge": safety_judge, "steer": steer, "reference": reference,
        "annotator": annotator, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "refusal_prob": refusal_prob, "data_dir": data_dir, "tags": parse_tags(tags),
    }
    cfg = build_config(EvaluateConfig, config, overrides, sets, section="evaluate")
    path = evaluate(cfg, out, force=force)
    Console(width=160).print(metrics_table(read_json(path / METRICS_FILE)))
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
