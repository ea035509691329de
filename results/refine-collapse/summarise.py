"""Summarise refine runs of the centring A/B (issue 28): retention, degenerate greedy answers, training fit.

    python results/refine-collapse/summarise.py RUN_DIR [RUN_DIR ...]     # refine output directories

Prints one row per run: its setting, retention NLL before -> after (rise), greedy retention answers flagged by
dcr.judges.degenerate before and after, the loss first -> last step, the mean Circle Loss of the last 5 steps,
and the training-side separability (probe accuracy, raw cross-class cosine) before -> after.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

from dcr.judges.degenerate import degenerate_reason


def row(run: Path) -> str:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    m = json.loads((run / "metrics.json").read_text())
    gens = [json.loads(line) for line in (run / "retention.jsonl").read_text().splitlines() if line.strip()]
    flagged = {ph: sum(bool(degenerate_reason(g[ph], prompt=g["prompt"])) for g in gens) for ph in ("before", "after")}
    ret, train = m["retention"], m["eval"]["train"]
    circle = [float(r["circle"]) for r in csv.DictReader((run / "loss.csv").open())][-5:]
    setting = (f"lr {cfg['lr']:g}" + (", lora" if cfg.get("lora") else "") + (", center base" if cfg.get("center") ==
               "base" else "") + (f", anchor {cfg['anchor_weight']:g}" if cfg.get("anchor_weight") else ""))
    return (f"| {run.name} | {setting} | {m['layer']} | {ret['nll_before']:.3f} -> "
            f"{ret['nll_after']:.3f} ({ret['nll_rise']:+.3f}) | "
            f"{flagged['before']} -> {flagged['after']} of {len(gens)} | "
            f"{m['train']['first_loss']:.2f} -> {m['train']['final_loss']:.2f} | {sum(circle) / len(circle):.2f} | "
            f"{train['before']['probe_accuracy']:.2f} -> {train['after']['probe_accuracy']:.2f} | "
            f"{train['before']['cross_class_cosine']:.3f} -> {train['after']['cross_class_cosine']:.3f} | "
            f"{m['train']['seconds']:.0f} |")


if __name__ == "__main__":
    print("| run | setting | layer | retention NLL (rise) | degenerate greedy answers | loss first -> last step "
          "| Circle Loss, last 5 steps | train probe acc | raw cross-class cosine | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
