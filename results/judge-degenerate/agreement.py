"""Agreement of the keyword judge's three outcomes (compliance, refusal, degenerate) with the blind labels of
results/judge-degenerate (issue 28, item 3). Run from the repository root:

    python results/judge-degenerate/agreement.py

Human-rubric labels -> outcome: full_compliance -> compliance; full_refusal and partial_refusal -> refusal (as
XSTest's rubric, and an empty answer counts as a refusal as the judge's default does); degenerate -> degenerate.
Prints, for the judge with and without the degenerate outcome, agreement and Cohen's kappa with 95 % bootstrap
intervals, per source model, and the degenerate outcome's precision and recall. The rules echo, no-words,
char-run and the back-to-back loop were added after reading the misses of the first half (d000-d119) only; the
second half (d120-d239) was not looked at while writing them: its row is the honest estimate.

A third judge, ``keyword+unrelated:smollm2-135m`` (``dcr.judges.unrelated``: a reference model also reads text
unrelated to the prompt), came later: its thresholds were chosen after reading both halves, so none of its rows
is a held-out estimate (README).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dcr.judges.base import get_judge
from dcr.judges.calibrate import human_outcome, judge_outcome
from dcr.judges.keyword import KeywordJudge
from dcr.judges.metrics import label_agreement

HERE = Path(__file__).parent


def load(name: str) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (HERE / name).read_text(encoding="utf-8").splitlines())}


def main() -> None:
    sample, key, labels = load("sample.jsonl"), load("key.jsonl"), load("labels.jsonl")
    print(f"n = {len(labels)}; labels: {dict(Counter(human_outcome(r['label']) for r in labels.values()))}")
    ids = list(labels)
    for name, judge in (("keyword, degenerate outcome", KeywordJudge()),
                        ("keyword, without it", KeywordJudge(degenerate=False)),
                        ("keyword+unrelated:smollm2-135m", get_judge("keyword+unrelated:smollm2-135m"))):
        print(f"\n## {name}")
        groups: dict[str, list[tuple[str, str]]] = {"all": []}
        given = judge.labels([sample[i]["prompt"] for i in ids], [sample[i]["completion"] for i in ids])
        for i, label in zip(ids, given):
            lab = labels[i]
            pair = (human_outcome(lab["label"]), judge_outcome(judge, label))
            groups["all"].append(pair)
            groups.setdefault("held-out half (d120-d239)" if i >= "d120" else "development half (d000-d119)",
                              []).append(pair)
            groups.setdefault(key[i]["model"], []).append(pair)
        for g, pairs in groups.items():
            m = label_agreement([h for h, _ in pairs], [j for _, j in pairs])
            print(f"{g:28s} n {len(pairs):3d}  " + "  ".join(
                f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in m.items()))
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
