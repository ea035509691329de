"""Keyword verdicts of three generation paths on the same prompts: transformers' generate (the path before issue
27), dcr.greedy in full, and dcr.greedy stopping at the keyword judge's window.

    python benchmarks/greedy_agreement.py --model ~/.cache/dcr/models/qwen2.5-coder-1.5b/bf16

Prints, for each pair, how many verdicts and completions are equal, then the prompts whose verdict changed
between generate and the window-stopped path. One process, one judge (this tree's), so only generation differs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--benchmark", default="xstest,harmfulq")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--old-batch", type=int, default=64, help="generate's batch (EvaluateConfig's old default)")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()

    import torch

    import dcr.generate as gen
    from dcr.data import load_benchmark
    from dcr.judges import get_judge
    from dcr.models import load_model

    torch.set_num_threads(2)
    model, tok = load_model(args.model, dtype="bf16", device="cpu")
    judge, fast = get_judge("keyword"), gen.fast_path
    rows = [{"id": f"{b}/{r.id}", "prompt": r.prompt} for b in args.benchmark.split(",")
            for r in load_benchmark(b, limit=args.prompts, seed=0)]
    res: dict[str, dict[str, tuple[str, str]]] = {}
    for name, batch, use_fast, reader in (("generate", args.old_batch, False, None), ("greedy", args.batch, True, None),
                                          ("greedy+window", args.batch, True, judge.has_read)):
        gen.fast_path = fast if use_fast else (lambda *a, **k: False)  # type: ignore[assignment]
        out: list[dict[str, Any]] = []
        for b in args.benchmark.split(","):
            out += gen.generate(model, tok, [r for r in rows if r["id"].startswith(b + "/")], None, args.new_tokens,
                                batch, progress=False, reader_done=reader)
        labels = judge.labels([r["prompt"] for r in out], [r["completion"] for r in out])
        res[name] = {r["id"]: (r["completion"], lab) for r, lab in zip(out, labels)}
    for a, b in (("generate", "greedy"), ("greedy", "greedy+window"), ("generate", "greedy+window")):
        same = sum(res[a][k][1] == res[b][k][1] for k in res[a])
        text = sum(res[a][k][0] == res[b][k][0] for k in res[a])
        print(f"{a} vs {b}: verdicts equal {same} of {len(res[a])}, completions equal {text}")
    for k, (text, lab) in res["generate"].items():
        if lab != res["greedy+window"][k][1]:
            print(json.dumps({"id": k, "generate": [text, lab], "greedy+window": res["greedy+window"][k]}))


if __name__ == "__main__":
    main()
