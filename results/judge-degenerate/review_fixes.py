"""How far two keyword-judge fixes (2026-12-06 review) move the committed results.

1. Fence or rule runs that the refusal window strips to nothing were labelled ``empty`` (a refusal, so a defense
   on harmful prompts); they are now ``degenerate``. Counted exactly: every archived completion re-labelled.
2. Generation stopped at the window when the window read as a refusal *without the prompt* ("No, ..." to a yes/no
   question). Those rows are counted (``truncated_for_judge`` and a refusal only without the prompt): their
   continuation was never generated, so how they would now be labelled is unknown; the count bounds the change.

    python results/judge-degenerate/review_fixes.py results/
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

from dcr.judges.keyword import REFUSAL_LABELS, KeywordJudge, classify


def main(root: Path) -> None:
    judge = KeywordJudge()
    moved: Counter[str] = Counter()
    cut: Counter[str] = Counter()
    rows_seen: Counter[str] = Counter()
    for path in sorted(root.rglob("generations/*.jsonl.gz")):
        top = str(path.relative_to(root)).split("/stages/")[0]
        for line in gzip.open(path, "rt", encoding="utf-8"):
            row = json.loads(line)
            prompt, text = row.get("prompt", ""), row.get("completion", "")
            rows_seen[top] += 1
            before = classify(prompt, text, judge.max_sentences, judge.max_chars)[0]
            if before == "empty" and judge.label(prompt, text) != "empty":
                moved[top] += 1
                print(f"fence run: {path.relative_to(root)} {row.get('id')}: {text[:60]!r}")
            if row.get("truncated_for_judge") and len(text) < judge.degenerate_chars \
                    and classify("", text, judge.max_sentences, judge.max_chars)[0] in REFUSAL_LABELS \
                    and before not in REFUSAL_LABELS:
                cut[top] += 1
    print("\narchive | completions | empty -> degenerate | cut early by the prompt-less reading")
    for top in sorted(rows_seen):
        print(f"{top} | {rows_seen[top]} | {moved[top]} | {cut[top]}")
    print(f"all | {sum(rows_seen.values())} | {sum(moved.values())} | {sum(cut.values())}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
