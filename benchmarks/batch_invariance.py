"""How much greedy completions depend on the batch they are generated in (the reason for fixed batch plans).

    python benchmarks/batch_invariance.py                      # SmolLM2, 24 XSTest prompts, bf16 and fp32
    python benchmarks/batch_invariance.py --prompts 48 --sizes 1,4,16

For each dtype, generates the same prompts at every batch size (``dcr.generate.generate``, the path of
``dcr evaluate``) and prints, against the first batch size, how many completions differ and the keyword judge's
refusal rate at each size. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os

import torch

from dcr.data import load_benchmark
from dcr.generate import generate
from dcr.judges import get_judge
from dcr.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--sizes", default="4,16")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = load_benchmark("xstest", limit=args.prompts, seed=0)
    rows = [{"id": r.id, "prompt": r.prompt} for r in records]
    sizes = [int(s) for s in args.sizes.split(",")]
    judge = get_judge("keyword")
    print(f"model {args.model}, {len(rows)} XSTest prompts (seed 0), {args.new_tokens} new tokens, greedy\n")
    print(f"| dtype | batch size | completions differing from batch size {sizes[0]} | keyword verdicts differing "
          "| keyword refusal rate |\n|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        model, tok = load_model(args.model, dtype=dtype, device="cpu")
        base: tuple[list[str], list[bool]] | None = None
        for size in sizes:
            texts = [r["completion"] for r in generate(model, tok, rows, None, args.new_tokens, size, progress=False)]
            refused = judge.judge([r["prompt"] for r in rows], texts)
            base = base or (texts, refused)
            diff = sum(a != b for a, b in zip(base[0], texts))
            flips = sum(a != b for a, b in zip(base[1], refused))
            print(f"| {dtype} | {size} | {diff} of {len(rows)} | {flips} of {len(rows)} | "
                  f"{sum(refused) / len(rows):.3f} |")
        del model


if __name__ == "__main__":
    main()
