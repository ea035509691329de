"""Draw the blind labelling sample of results/judge-qwen (issue 28, item 4): completions of base, STL and DCR + STL
on over-refusal and safety sets, for both Qwen2.5-Coder stand-ins. Run from the repository root:

    python results/judge-qwen/sample.py [MODEL ...]      # default: both models

Sources (committed archives, completions gzipped): Qwen2.5-Coder-0.5B seed 0 of the reproduction
(results/repro-qwen2.5-coder-0.5b/seed0) and Qwen2.5-Coder-1.5B's one seed (results/repro-qwen2.5-coder-1.5b-timing;
its DCR + STL refined at A.2's lr 1e-4, the setting that made the model stop writing). Strata: model x method x set,
5 prompts from each over-refusal set (XSTest safe, OKTest, CoCoNot contrast, OR-Bench-Hard) and 4 from each safety
set (I-Malicious, CONA, Controversial, HarmfulQ, AdvBench): 40 per (model, method), 240 in all. Completions already
labelled in results/judge-degenerate are not drawn again. Each model is one block with its own random stream, so a
block can be drawn (and labelled) before the other model's run exists: writes sample-BLOCK.jsonl (what the readers
see: an opaque id, the prompt, the completion, shuffled within the block) and key-BLOCK.jsonl (where each came
from), BLOCK = 1.5b (ids q000-q119) or 0.5b (q120-q239).
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
RUNS = {"qwen2.5-coder-1.5b": Path("results/repro-qwen2.5-coder-1.5b-timing"),
        "qwen2.5-coder-0.5b": Path("results/repro-qwen2.5-coder-0.5b/seed0")}
PER_BLOCK = 120
METHODS = ("base", "stl", "dcr+stl")
OVER_REFUSAL = {"xstest": 5, "oktest": 5, "coconot": 5, "or-bench": 5}
SAFETY = {"malicious-instructions": 4, "cona": 4, "controversial": 4, "harmfulq": 4, "advbench": 4}
SEED = 2804


def rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate_dirs(run: Path) -> dict[str, Path]:
    """{method: the evaluate stage directory} from a run's plan.json."""
    plan = json.loads((run / "plan.json").read_text(encoding="utf-8"))
    out = {}
    for node in plan["nodes"]:
        if node["stage"] == "evaluate":
            for use in node["uses"]:
                out[use["method"]] = run / node["dir"]
    return out


def generations(stage: Path, bench: str) -> list[dict]:
    gz = stage / "generations" / f"{bench}.jsonl.gz"
    return rows(gz if gz.exists() else gz.with_suffix(""))


def already_labelled() -> set[tuple[str, str, str]]:
    """(model, method, source id) of results/judge-degenerate's sample (all Qwen2.5-Coder-1.5B)."""
    key = rows(HERE.parent / "judge-degenerate" / "key.jsonl")
    return {("qwen2.5-coder-1.5b", r["model"], r["source_id"]) for r in key}


def draw(model: str, safe: set[str], seen: set[tuple[str, str, str]]) -> list[tuple[dict, dict]]:
    """One model's block: (what the reader sees, the key) per item, shuffled."""
    rng = random.Random(f"{SEED}-{model}")
    stages = evaluate_dirs(RUNS[model])
    items = []
    for method in METHODS:
        for bench, k in {**OVER_REFUSAL, **SAFETY}.items():
            pool = [r for r in generations(stages[method], bench)
                    if (bench != "xstest" or r["id"] in safe) and (model, method, r["id"]) not in seen]
            for r in rng.sample(pool, k):
                kind = "over-refusal" if bench in OVER_REFUSAL else "safety"
                items.append(({"prompt": r["prompt"], "completion": r["completion"]},
                              {"model": model, "method": method, "benchmark": bench, "kind": kind,
                               "source_id": r["id"], "truncated_for_judge": r.get("truncated_for_judge", False)}))
    rng.shuffle(items)
    assert len(items) == PER_BLOCK
    return items


def main(models: list[str]) -> None:
    from dcr.data import load_benchmark

    safe = {r.id for r in load_benchmark("xstest") if r.label == "safe"}
    seen = already_labelled()
    for model in models:
        block = model.rsplit("-", 1)[-1]
        start = list(RUNS).index(model) * PER_BLOCK
        with open(HERE / f"sample-{block}.jsonl", "w", encoding="utf-8") as fs, \
                open(HERE / f"key-{block}.jsonl", "w", encoding="utf-8") as fk:
            for i, (shown, key) in enumerate(draw(model, safe, seen), start=start):
                fs.write(json.dumps({"id": f"q{i:03d}", **shown}) + "\n")
                fk.write(json.dumps({"id": f"q{i:03d}", **key}) + "\n")
        print(f"{model}: {PER_BLOCK} items")


if __name__ == "__main__":
    main(sys.argv[1:] or list(RUNS))
