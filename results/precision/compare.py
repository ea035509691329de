"""One model evaluated twice, in two compute precisions (or on two hosts): paired differences, same prompts.

    python results/precision/compare.py STAGE_A STAGE_B

STAGE_A, STAGE_B: finished evaluate stage directories (their manifest.json, generations/ and judgements/, as a run
or `dcr archive` keeps them) of the same model on the same benchmarks. Prints, per pool and per set, the rate of
each and B minus A paired over prompts with its 95 % bootstrap interval (prompts resampled), and the share of
prompts whose verdict differs. The pools are the merged reports': never-trained compliance (OKTest, CoCoNot,
OR-Bench-Hard; `dcr.report.paired.is_never_trained`) and five-set defense success.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dcr.io import read_json
from dcr.report.paired import is_never_trained, is_safety, node_outcomes, paired_bootstrap


def outcomes(stage: Path) -> tuple[dict[str, dict[str, bool]], dict]:
    manifest = read_json(stage / "manifest.json")
    return node_outcomes(Path("/"), {"dir": str(stage.resolve()), "config": manifest["config"]}), manifest


def line(name: str, pairs: list[tuple[bool, bool]]) -> str:
    diffs = {str(i): {0: float(b) - float(a)} for i, (a, b) in enumerate(pairs)}
    mean, lo, hi = paired_bootstrap(diffs)
    ra, rb = (sum(p[k] for p in pairs) / len(pairs) for k in (0, 1))
    moved = sum(a != b for a, b in pairs)
    return f"| {name} | {len(pairs)} | {ra:.3f} | {rb:.3f} | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | {moved} |"


def main(a: Path, b: Path) -> None:
    (out_a, man_a), (out_b, man_b) = outcomes(a), outcomes(b)
    dt = [str((m.get("host") or {}).get("auto_dtype", "not recorded")) for m in (man_a, man_b)]
    print(f"A: {a} (auto dtype {dt[0]}, config dtype {man_a['config'].get('dtype')})")
    print(f"B: {b} (auto dtype {dt[1]}, config dtype {man_b['config'].get('dtype')})\n")
    print("| group | n | A rate | B rate | B - A [95% paired bootstrap] | verdicts that differ |")
    print("|---|---|---|---|---|---|")
    pools: dict[str, list[tuple[bool, bool]]] = {"never-trained compliance": [], "five-set defense success": []}
    for group in sorted(set(out_a) & set(out_b)):
        pairs = [(out_a[group][p], out_b[group][p]) for p in sorted(set(out_a[group]) & set(out_b[group]))]
        if pairs:
            print(line(group, pairs))
        if is_never_trained(group):
            pools["never-trained compliance"] += pairs
        elif is_safety(group):
            pools["five-set defense success"] += pairs
    for name, pairs in pools.items():
        print(line(f"**{name}**", pairs))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python results/precision/compare.py STAGE_A STAGE_B")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
