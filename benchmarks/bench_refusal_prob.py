"""Refusal-probability throughput (A.5: the paper's 31 refusal phrases scored after each prompt, the path of align's
tracking and ``dcr evaluate``'s refusal_prob), and its peak memory.

    python benchmarks/bench_refusal_prob.py --model qwen2.5-coder-0.5b --prompts 48 --threads 1
    python benchmarks/bench_refusal_prob.py --model qwen2.5-coder-0.5b --compare HEAD~1 --rounds 1

Scores ``--prompts`` seeded OKTest prompts (chat template, the tracking's path: ``dcr.evaluate.refusal_prob`` with
the prefix cache) and prints prompts/s and peak RSS; one warm-up call first.
"""

from __future__ import annotations

import argparse
import time

from common import add_common_args, peak_rss_mb, run_benchmark


def measure(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from dcr.data import load_benchmark
    from dcr.data.registry import data_dir
    from dcr.evaluate.refusal_prob import refusal_prob
    from dcr.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    prompts = [r.prompt for r in load_benchmark("oktest", data_dir(None), args.prompts, 0)]
    refusal_prob(model, tok, prompts[:2], "auto", prefix_cache=True)  # warm-up
    start = time.perf_counter()
    refusal_prob(model, tok, prompts, "auto", prefix_cache=True)
    wall = time.perf_counter() - start
    return {"prompts_per_s": len(prompts) / wall, "wall_s": wall, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--dtype", default="auto")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"{args.model}, {args.prompts} OKTest prompts, {args.dtype}, {args.threads} threads",
                  {"prompts_per_s": "prompts/s", "wall_s": "wall s", "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
