"""How far a committed result moves when its seed is rerun and judged with the degenerate outcome (issue 28,
item 4).

    python results/judge-degenerate/committed_vs_rerun.py results/repro-smollm2/seed0 \
        results/ablation-stl-mix/smollm2-67-s0

Both arguments are archived runs (results.jsonl). For every (method, benchmark, split, metric) of the committed
run that the rerun also has: the committed value, the rerun's value, the difference, and the rerun's share of
degenerate answers on that set. The committed run's verdicts came from the keyword judge before it had a
degenerate outcome (a degenerate answer to a safe prompt counted as compliance); the rerun keeps its completions
(gzipped in the archive), so it can be judged again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dcr.io import read_jsonl

METRICS = ("compliance_rate", "defense_success_rate", "accuracy")


def index(run: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    out = {}
    for r in read_jsonl(run / "results.jsonl"):
        if r.get("metric") in (*METRICS, "degenerate_rate") and r.get("seed", 0) is not None:
            out[(r["method"], r["benchmark"], r["split"], r["metric"])] = r
    return out


def main(committed: Path, rerun: Path) -> None:
    old, new = index(committed), index(rerun)
    print(f"committed: {committed}\nrerun: {rerun}\n")
    print("| method | benchmark | split | metric | committed (n) | rerun (n) | rerun - committed | rerun degenerate |")
    print("|---|---|---|---|---|---|---|---|")
    for key in sorted(k for k in old if k[3] in METRICS and k in new):
        method, bench, split, metric = key
        a, b = old[key], new[key]
        kind = "over-refusal" if metric == "compliance_rate" else "safety"
        deg = next((r["value"] for (m, bb, s, mm), r in new.items() if (m, bb, mm) == (method, bench, "degenerate_rate")
                    and s in (split, "all") and r.get("kind", kind) == kind), None)
        print(f"| {method} | {bench} | {split} | {metric} | {a['value']:.3f} ({a['n']}) | {b['value']:.3f} ({b['n']}) "
              f"| {b['value'] - a['value']:+.3f} | {'' if deg is None else f'{deg:.3f}'} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
