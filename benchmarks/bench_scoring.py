"""Multiple-choice scoring throughput of ``dcr.evaluate.general.score_items`` (the path of MMLU / ARC / PIQA in
``dcr evaluate``), and its peak memory.

    python benchmarks/bench_scoring.py --model gemma3-270m --items 24 --batch 64 --threads 1
    python benchmarks/bench_scoring.py --model gemma3-270m --batch 4 --compare HEAD~1   # against another revision

Scores the first ``--items`` MMLU questions (every option) as ``dcr evaluate`` does (``--batch``: questions per
forward; revisions before shared-context scoring: pairs per forward) and prints tokens/s counted as context + option
of every pair whatever the path computes (so a ratio between revisions is a speed ratio), the model FLOP/s as a
share of this CPU's matmul peak in the compute dtype (2 x (non-embedding parameters + LM head) per counted token:
for the shared-context path, which computes a context once, an apparent rate above what it computes) and peak RSS.
bf16 by default; one warm-up call first.
"""

from __future__ import annotations

import argparse
import time

from common import add_common_args, matmul_flops_per_token, matmul_peak_tflops, peak_rss_mb, run_benchmark


def measure(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from dcr.data.registry import data_dir
    from dcr.evaluate.general import load_general, score_items, wants_bos
    from dcr.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    items = load_general("mmlu", data_dir(None))[: args.items]
    ctx = [it.context for it in items for _ in it.options]
    cont = [o for it in items for o in it.options]
    bos = wants_bos(model)
    score_items(model, tok, items[:2], 2)  # warm-up
    start = time.perf_counter()
    score_items(model, tok, items, args.batch)
    wall = time.perf_counter() - start
    tokens = sum(len(tok(c + y, add_special_tokens=bos)["input_ids"]) for c, y in zip(ctx, cont))
    peak = matmul_peak_tflops(args.threads)
    return {"tokens_per_s": tokens / wall, "wall_s": wall, "items_per_s": len(items) / wall, "pairs": len(ctx),
            "pct_of_matmul_peak": 100 * matmul_flops_per_token(model) * tokens / wall / (peak * 1e12),
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=24, help="MMLU questions (all their options are scored)")
    ap.add_argument("--batch", type=int, default=8, help="questions per forward (dcr evaluate's score_batch_size)")
    ap.add_argument("--dtype", default="bf16")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"{args.model}, {args.items} MMLU questions, batch {args.batch}, {args.dtype}, "
                  f"{args.threads} threads",
                  {"tokens_per_s": "tokens/s", "wall_s": "wall s", "items_per_s": "questions/s", "pairs": "pairs",
                   "pct_of_matmul_peak": "% of matmul peak", "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
