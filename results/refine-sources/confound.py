"""Does STL undo what refinement did to the confound probe? (issue 29, item 5). Run from the repository root:

    python results/refine-sources/confound.py results/refine-sources/smollm2-s0-confound

The argument holds one `dcr probe confound` output per (arm, model): ARM-stl and ARM-dcr-stl, ARM = paper or
matched, each scored on its own arm's refine stage prompts (`--refine-stage`). Each metrics.json also carries that
refine stage's own before / after. Printed per arm: probe accuracy on class within one source (harm) and on source
within one class (data set), for the base model (refine's before), the refined model (refine's after), STL and
DCR + STL, with n per side. Where the seed's DEST also holds ARM-ntk-base-refined and ARM-ntk-stl-dcr-stl
(`NTK=1 bash configs/confound-probes.sh`), the eNTK ratio K(seemingly toxic, toxic) / K(toxic, toxic) of the four
models follows (issue 29, item 3).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def acc(row: dict) -> str:
    v = row.get("probe_accuracy")
    return "n/m" if v is None else f"{v:.3f}"


def table(arm: str, root: Path) -> None:
    stl = json.loads((root / f"{arm}-stl" / "metrics.json").read_text())
    dcr = json.loads((root / f"{arm}-dcr-stl" / "metrics.json").read_text())
    own = stl["refine_stage_confound"] or {}  # None: the refine stage ran without the diagnostic
    assert stl["refine_stage"] == dcr["refine_stage"], "the two models were scored on different refine stages"
    print(f"\n### {arm} refine ({Path(stl['refine_stage']).name}, layer {stl['layer']}, seed {stl['seed']})\n")
    print("| probe | chance | n per side | base (refine before) | refined (after) | STL | DCR + STL |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("class_within_source", "source_within_class"):
        for group, row in stl["confound"][kind].items():
            cells = [own.get(p, {}).get(kind, {}).get(group, {}) for p in ("before", "after")]
            cells += [row, dcr["confound"][kind][group]]
            n = "/".join(str(k) for k in row["n"])
            print(f"| {kind.replace('_', ' ')}: {group} | {row.get('chance', '')} | {n} | "
                  + " | ".join(acc(c) for c in cells) + " |")


def ntk_row(arm: str, root: Path) -> None:
    runs = [root / f"{arm}-ntk-{pair}" / "metrics.json" for pair in ("base-refined", "stl-dcr-stl")]
    if not all(r.is_file() for r in runs):
        return
    metrics = [json.loads(r.read_text()) for r in runs]
    cells = [f"{m[side]['ratio_stoxic_toxic']:.3f}" for m in metrics for side in ("before", "after")]
    n = metrics[0]["config"]["n_per_group"]
    print(f"| eNTK K(s-toxic, toxic) / K(toxic, toxic) | | {n} per group | " + " | ".join(cells) + " |")


def main(root: Path) -> None:
    for arm in ("paper", "matched"):
        if (root / f"{arm}-stl").is_dir():
            table(arm, root)
            ntk_row(arm, root)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
