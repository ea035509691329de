"""Training throughput of the refine stage (``dcr.refine.refine``) on SmolLM2, at quickstart or medium sizes.

    python benchmarks/bench_refine.py                        # quickstart: 64 prompts per class, batch 16, NLL on
    python benchmarks/bench_refine.py --size medium          # 200 : 400 prompts, batch 32, 1 epoch timed
    python benchmarks/bench_refine.py --compare HEAD~3       # the same measurement against another revision
    python benchmarks/bench_refine.py --model ~/.cache/dcr/models/qwen2.5-coder-0.5b --layer 11 --size medium \
        --micro-batch 8 --compare 62260d5 --rounds 1             # issue 27's refine step ratio
    python benchmarks/bench_refine.py --model ~/.cache/dcr/models/qwen2.5-coder-1.5b --layer 13 --size short \
        --micro-batch 8 --gradient-checkpointing --compare REV --rounds 1   # the paper's A.2 refine at 1.5B

Runs the whole stage in a temporary directory and reads the training loop's own figures from metrics.json
(tokens and seconds of the optimisation steps only). Prints tokens/s, the model FLOP/s as a share of this CPU's
matmul peak in the compute dtype (6 x forward matmul FLOPs per token; forward through every block and the LM head
when the NLL term is on, else through blocks 0..l), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import tempfile

from common import add_common_args, matmul_flops_per_token, matmul_peak_tflops, peak_rss_mb, run_benchmark

SIZES = {"quickstart": dict(limit=64, epochs=2, batch_size=16, eval_batch_size=16, max_length=128),
         "medium": dict(limit=200, epochs=1, batch_size=32, eval_batch_size=32, max_length=128),
         "short": dict(limit=48, epochs=1, batch_size=32, eval_batch_size=16, max_length=128)}  # 3 steps (1.5B)


def measure(args: argparse.Namespace) -> dict[str, float]:
    import dataclasses

    import torch

    from dcr.io import read_json
    from dcr.models import load_model
    from dcr.refine import RefineConfig, refine

    torch.set_num_threads(args.threads)
    known = {f.name for f in dataclasses.fields(RefineConfig)}
    extra = {k: v for k, v in (("micro_batch", args.micro_batch), ("memory_check", False), ("retention_n", 0),
                               ("gradient_checkpointing", args.gradient_checkpointing or None))
             if k in known and v is not None}
    cfg = RefineConfig(model=args.model, dtype="auto", nll_weight=args.nll, layer=args.layer, **SIZES[args.size],
                       **extra)
    with tempfile.TemporaryDirectory() as tmp:
        out = refine(cfg, f"{tmp}/refine")
        metrics = read_json(out / "metrics.json")
    train = metrics["train"]
    model, _ = load_model(args.model, dtype="fp32", device="cpu")
    fwd = matmul_flops_per_token(model, None if args.nll > 0 else metrics["layer"] + 1)
    peak = matmul_peak_tflops(args.threads)
    tps = train["tokens"] / train["seconds"]
    return {"tokens_per_s": tps, "train_s": train["seconds"], "steps": train["steps"],
            "pct_of_matmul_peak": 100 * 3 * fwd * tps / (peak * 1e12), "matmul_peak_tflops": peak,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=15, help="refine layer (BENCHMARKS.md rows: 15 of 30)")
    ap.add_argument("--size", choices=sorted(SIZES), default="quickstart")
    ap.add_argument("--nll", type=float, default=0.001, help="NLL weight (0 = truncated forward)")
    ap.add_argument("--micro-batch", type=int, help="gradient caching micro-batch (revisions that have it; older "
                                                     "ones run the plain path)")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="activation checkpointing (1.5B rows)")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"refine {args.model}, {args.size} sizes, nll {args.nll}, {args.threads} threads",
                  {"tokens_per_s": "tokens/s", "train_s": "train s", "steps": "steps",
                   "pct_of_matmul_peak": "% of matmul peak", "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
