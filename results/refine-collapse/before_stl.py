"""The refined model before STL against its base model, on the same prompts with the same judge (issue 28).

    python results/refine-collapse/before_stl.py BASE_EVAL_DIR REFINED_EVAL_DIR

Both arguments are `dcr evaluate` output directories. Per benchmark: n, each model's rate (compliance on safe
prompts: neither refused nor degenerate; defense success on unsafe ones) with its 95 % Wilson interval, the
degenerate share, and refined minus base paired over prompts (95 % bootstrap over prompts); and the held-out NLL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dcr.report.paired import outcome, paired_bootstrap, wilson


def verdicts(run: Path, bench: str) -> dict[str, tuple[bool, bool]]:
    [path] = sorted((run / "judgements").glob(f"{bench}__keyword*.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["id"]: (bool(r["value"]), r["label"] == "degenerate") for r in rows}


def nll(run: Path) -> str:
    for line in (run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("benchmark") == "heldout-nll" and r.get("metric") == "nll_per_token":
            return f"{r['value']:.3f} (n {r['n']})"
    return "—"


def main(base: Path, refined: Path) -> None:
    print("| benchmark | n | outcome | base [95% Wilson] | refined [95% Wilson] | degenerate base / refined "
          "| refined - base [95% paired bootstrap] |")
    print("|---|---|---|---|---|---|---|")
    for bench, safe in (("xstest-safe", True), ("oktest", True), ("harmfulq", False)):
        a, b = verdicts(base, bench), verdicts(refined, bench)
        ids = sorted(set(a) & set(b))
        xa = [outcome(a[i], safe) for i in ids]
        xb = [outcome(b[i], safe) for i in ids]
        n = len(ids)
        mean, lo, hi = paired_bootstrap({i: {0: float(y) - float(x)} for i, x, y in zip(ids, xa, xb)})
        (la, ha), (lb, hb) = wilson(sum(xa), n), wilson(sum(xb), n)
        dega, degb = sum(a[i][1] for i in ids), sum(b[i][1] for i in ids)
        print(f"| {bench} | {n} | {'compliance' if safe else 'defense success'} | {sum(xa) / n:.2f} [{la:.2f}, "
              f"{ha:.2f}] | {sum(xb) / n:.2f} [{lb:.2f}, {hb:.2f}] | {dega} / {degb} | {mean:+.2f} [{lo:+.2f}, "
              f"{hi:+.2f}] |")
    print(f"\nheld-out NLL (AlpacaEval references): base {nll(base)}, refined {nll(refined)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
