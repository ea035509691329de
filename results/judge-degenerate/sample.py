"""Draw the blind labelling sample of results/judge-degenerate (issue 28, item 3): completions of Qwen2.5-Coder-1.5B
models that write and that do not. Run from the repository root:

    python results/judge-degenerate/sample.py /work/bench-out/refined15-eval

ARG: the `dcr evaluate` directory of the refined model before STL (BENCHMARKS.md, "The 1.5B seed's refined model,
before STL"; not committed: 300 completions, the ones used here are in sample.jsonl). The base, STL and DCR + STL
completions come from results/repro-qwen2.5-coder-1.5b-timing. Writes sample.jsonl (what the readers see: an
opaque id, the prompt, the completion, in shuffled order) and key.jsonl (where each came from).
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
TIMING = Path("results/repro-qwen2.5-coder-1.5b-timing/stages")
STAGES = {"base": "evaluate-10b30c81d9a76acc", "stl": "evaluate-b4641a68fe3f0344",
          "dcr+stl": "evaluate-8f53533027edaa93"}


def rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(refined: Path) -> None:
    from dcr.data import load_benchmark

    safe = {r.id for r in load_benchmark("xstest") if r.label == "safe"}
    rng = random.Random(28)
    items = []
    for bench in ("xstest-safe", "oktest", "harmfulq"):  # the refined model: 40 per set
        for r in rng.sample(rows(refined / "generations" / f"{bench}.jsonl"), 40):
            items.append(({"prompt": r["prompt"], "completion": r["completion"]},
                          {"model": "dcr (refined, before STL)", "benchmark": bench, "source_id": r["id"]}))
    for method, stage in STAGES.items():  # 10 per (method, set)
        for bench in ("xstest", "oktest", "or-bench", "harmfulq"):
            pool = [r for r in rows(TIMING / stage / "generations" / f"{bench}.jsonl.gz")
                    if bench != "xstest" or r["id"] in safe]
            for r in rng.sample(pool, 10):
                items.append(({"prompt": r["prompt"], "completion": r["completion"]},
                              {"model": method, "benchmark": bench, "source_id": r["id"]}))
    rng.shuffle(items)
    with open(HERE / "sample.jsonl", "w", encoding="utf-8") as fs, \
            open(HERE / "key.jsonl", "w", encoding="utf-8") as fk:
        for i, (shown, key) in enumerate(items):
            fs.write(json.dumps({"id": f"d{i:03d}", **shown}) + "\n")
            fk.write(json.dumps({"id": f"d{i:03d}", **key}) + "\n")
    print(f"{len(items)} items")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
