"""Agreement of the keyword judge's three outcomes (compliance, refusal, degenerate) with the blind labels of
results/judge-degenerate (issue 28, item 3). Run from the repository root:

    python results/judge-degenerate/agreement.py

Human-rubric labels -> outcome: full_compliance -> compliance; full_refusal and partial_refusal -> refusal (as
XSTest's rubric, and an empty answer counts as a refusal as the judge's default does); degenerate -> degenerate.
Prints, for the judge with and without the degenerate outcome, agreement and Cohen's kappa with 95 % bootstrap
intervals, per source model, and the degenerate outcome's precision and recall. The rules echo, no-words,
char-run and the back-to-back loop were added after reading the misses of the first half (d000-d119) only; the
second half (d120-d239) was not looked at while writing them: its row is the honest estimate.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from dcr.judges.keyword import KeywordJudge

HERE = Path(__file__).parent
TO_OUTCOME = {"full_compliance": "compliance", "full_refusal": "refusal", "partial_refusal": "refusal",
              "degenerate": "degenerate"}


def load(name: str) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (HERE / name).read_text(encoding="utf-8").splitlines())}


def outcome(judge: KeywordJudge, prompt: str, completion: str) -> str:
    label = judge.label(prompt, completion)
    return "degenerate" if label == "degenerate" else "refusal" if judge.positive(label) else "compliance"


def kappa(pairs: list[tuple[str, str]]) -> float:
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def ci(pairs: list[tuple[str, str]], stat, n_boot: int = 2000) -> tuple[float, float, float]:
    rng = random.Random(0)
    boot = sorted(stat([pairs[rng.randrange(len(pairs))] for _ in pairs]) for _ in range(n_boot))
    return stat(pairs), boot[int(0.025 * n_boot)], boot[int(0.975 * n_boot) - 1]


def agreement(pairs: list[tuple[str, str]]) -> float:
    return sum(a == b for a, b in pairs) / len(pairs)


def main() -> None:
    sample, key, labels = load("sample.jsonl"), load("key.jsonl"), load("labels.jsonl")
    print(f"n = {len(labels)}; labels: {dict(Counter(TO_OUTCOME[r['label']] for r in labels.values()))}")
    for name, judge in (("keyword, degenerate outcome", KeywordJudge()),
                        ("keyword, without it", KeywordJudge(degenerate=False))):
        print(f"\n## {name}")
        groups: dict[str, list[tuple[str, str]]] = {"all": []}
        for i, lab in labels.items():
            pair = (TO_OUTCOME[lab["label"]], outcome(judge, sample[i]["prompt"], sample[i]["completion"]))
            groups["all"].append(pair)
            groups.setdefault("held-out half (d120-d239)" if i >= "d120" else "development half (d000-d119)",
                              []).append(pair)
            groups.setdefault(key[i]["model"], []).append(pair)
        for g, pairs in groups.items():
            a, k = ci(pairs, agreement), ci(pairs, kappa)
            print(f"{g:28s} n {len(pairs):3d}  agreement {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}]  "
                  f"kappa {k[0]:.3f} [{k[1]:.3f}, {k[2]:.3f}]")
        for g in ("all", "held-out half (d120-d239)"):
            pairs = groups[g]
            tp = sum(h == j == "degenerate" for h, j in pairs)
            flagged, true = sum(j == "degenerate" for _, j in pairs), sum(h == "degenerate" for h, _ in pairs)
            if flagged:
                print(f"degenerate, {g}: precision {tp}/{flagged} = {tp / flagged:.3f}, "
                      f"recall {tp}/{true} = {tp / true:.3f}")
        pairs = groups["all"]
        true = sum(h == "degenerate" for h, _ in pairs)
        confusion = Counter(pairs)
        print("confusion (label -> judge):", {f"{h}->{j}": c for (h, j), c in sorted(confusion.items())})
        fake = sum(h == "degenerate" and j == "compliance" for h, j in pairs)
        print(f"degenerate answers the judge counts as compliance: {fake} of {true}")


if __name__ == "__main__":
    main()
