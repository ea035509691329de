"""The keyword judge against blind labels on Qwen2.5-Coder completions (issue 28, item 4). Run from the repository root:

    python results/judge-qwen/agreement.py            # prints the tables (agreement.txt), writes calibration.csv

Inputs per block (1.5b, 0.5b; see sample.py): sample-BLOCK.jsonl, key-BLOCK.jsonl, the two readers' labels
readers-BLOCK.jsonl ({"id", "r1", "r2"}) and the adjudicated final label where they differ, final-BLOCK.jsonl
({"id", "label", "note"}). Classes: XSTest's rubric (full_compliance, full_refusal, partial_refusal) plus
degenerate. Outcome = compliance / refusal (full or partial) / degenerate, the judge's three.

Prints: the readers' agreement with each other; the judge's agreement and Cohen's kappa with the final labels,
overall and per model, method and kind of set (95 % bootstrap over items); the confusion table; and the partial
refusals: how many the judge counts as refusals. Writes calibration.csv (id, model, prompt, completion, label; model
= "MODEL METHOD"), which `dcr judge --calibrate results/judge-qwen/calibration.csv` reads.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from dcr.judges.calibrate import human_outcome, judge_outcome
from dcr.judges.keyword import KeywordJudge
from dcr.judges.metrics import label_agreement

HERE = Path(__file__).parent
BLOCKS = ("1.5b", "0.5b")
Pairs = list[tuple[str, str]]


def load(name: str) -> dict[str, dict]:
    path = HERE / name
    if not path.exists():
        return {}
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r}


def both(pairs: Pairs) -> str:
    """Agreement and Cohen's kappa with 95 % bootstrap intervals over items."""
    m = label_agreement([a for a, _ in pairs], [b for _, b in pairs])
    return "  ".join(f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in m.items())


def rows() -> list[dict]:
    """One dict per labelled item: prompt, completion, key fields, r1, r2, final label."""
    out = []
    for block in BLOCKS:
        sample, key = load(f"sample-{block}.jsonl"), load(f"key-{block}.jsonl")
        readers, final = load(f"readers-{block}.jsonl"), load(f"final-{block}.jsonl")
        for i, r in readers.items():
            label = r["r1"] if r["r1"] == r["r2"] else final[i]["label"]
            out.append({**sample[i], **key[i], "r1": r["r1"], "r2": r["r2"], "label": label})
    return out


def main() -> None:
    items, judge = rows(), KeywordJudge()
    print(f"n = {len(items)}; final labels: {dict(Counter(r['label'] for r in items))}")
    readers = [(r["r1"], r["r2"]) for r in items]
    print(f"readers, 4 classes: {both(readers)}")
    print(f"readers, 3 outcomes: {both([(human_outcome(a), human_outcome(b)) for a, b in readers])}")
    groups: dict[str, Pairs] = {"all": []}
    raw, misses = [], []
    for r in sorted(items, key=lambda r: r["id"]):
        label = judge.label(r["prompt"], r["completion"])
        pair = (human_outcome(r["label"]), judge_outcome(judge, label))
        raw.append((r["label"], label))
        for g in ("all", r["kind"], r["method"], r["model"], f"{r['model']} {r['method']}"):
            groups.setdefault(g, []).append(pair)
        if pair[0] != pair[1]:
            misses.append(f"{r['id']} {r['model']} {r['method']} {r['benchmark']}: {r['label']} -> judge {label} "
                          f"({judge.explain(r['prompt'], r['completion'])!r}) | {r['prompt'][:70]!r} | "
                          f"{r['completion'][:110]!r}")
    print("\n## keyword judge (with the degenerate outcome) vs the final labels, 3 outcomes")
    for g in sorted(groups, key=lambda g: (g != "all", g.count(" "), g)):
        pairs = groups[g]
        print(f"{g:34s} n {len(pairs):3d}  {both(pairs)}")
    print("\nconfusion (final label -> judge label):",
          {f"{h} -> {j}": c for (h, j), c in sorted(Counter(raw).items())})
    partial = [j for h, j in raw if h == "partial_refusal"]
    caught = sum(judge.positive(j) for j in partial)
    print(f"partial refusals: {len(partial)}; the judge counts {caught} as refusals "
          f"({dict(Counter(partial))})")
    print(f"\n## the judge's {len(misses)} disagreements with the final labels")
    print("\n".join(misses))
    with open(HERE / "calibration.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "model", "benchmark", "prompt", "completion", "label"])
        w.writeheader()
        for r in sorted(items, key=lambda r: r["id"]):
            w.writerow({"id": r["id"], "model": f"{r['model']} {r['method']}", "benchmark": r["benchmark"],
                        "prompt": r["prompt"], "completion": r["completion"], "label": r["label"]})


if __name__ == "__main__":
    main()
