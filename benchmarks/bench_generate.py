"""Generation throughput of ``dcr.generate.generate`` (the path of ``dcr evaluate``) on SmolLM2.

    python benchmarks/bench_generate.py                          # quickstart settings: 48 XSTest prompts, 48 tokens
    python benchmarks/bench_generate.py --prompts 96 --new-tokens 64 --batch 16
    python benchmarks/bench_generate.py --compare HEAD~3         # the same measurement against another revision

Prints completion tokens/s, the model FLOP/s as a share of this CPU's measured bf16 matmul peak, and peak RSS.
FLOPs are counted as 2 x (non-embedding parameters + LM head) per processed token (prompt and completion),
attention excluded, so the share is a lower bound. Greedy, bf16 by default; one warm-up batch first.
"""

from __future__ import annotations

import argparse
import time

from common import add_common_args, matmul_flops_per_token, matmul_peak_tflops, peak_rss_mb, run_benchmark


def measure(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from dcr.data import load_benchmark
    from dcr.generate import generate
    from dcr.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    rows = [{"id": r.id, "prompt": r.prompt} for r in load_benchmark("xstest", limit=args.prompts, seed=0)]
    generate(model, tok, rows[:2], None, 4, 2, progress=False)  # warm-up
    start = time.perf_counter()
    out = generate(model, tok, rows, None, args.new_tokens, args.batch, progress=False)
    wall = time.perf_counter() - start
    completion = sum(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) for r in out)
    prompt = sum(len(tok(r["prompt"])["input_ids"]) for r in rows)
    flops_per_token = matmul_flops_per_token(model)
    peak = matmul_peak_tflops(args.threads)
    return {"tokens_per_s": completion / wall, "wall_s": wall, "completion_tokens": completion,
            "pct_of_bf16_peak": 100 * flops_per_token * (prompt + completion) / wall / (peak * 1e12),
            "bf16_peak_tflops": peak, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=48, help="XSTest prompts (seeded subsample)")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", default="bf16")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"{args.model}, {args.prompts} XSTest prompts, {args.new_tokens} new tokens, "
                  f"batch {args.batch}, {args.dtype}, {args.threads} threads",
                  {"tokens_per_s": "tokens/s", "wall_s": "wall s", "pct_of_bf16_peak": "% of bf16 matmul peak",
                   "bf16_peak_tflops": "bf16 peak TFLOP/s", "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
