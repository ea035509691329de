"""Generation throughput of ``dcr.generate.generate`` (the path of ``dcr evaluate``) on SmolLM2.

    python benchmarks/bench_generate.py                          # quickstart settings: 48 XSTest prompts, 48 tokens
    python benchmarks/bench_generate.py --prompts 96 --new-tokens 64 --batch 16
    python benchmarks/bench_generate.py --compare HEAD~3         # the same measurement against another revision
    python benchmarks/bench_generate.py --model qwen2.5-coder-1.5b --benchmark xstest,harmfulq --prompts 100 \
        --new-tokens 48 --batch 100 --reader keyword --compare 62260d5 --old-batch 64   # issue 27's ratio

Prints completion tokens/s, the model FLOP/s as a share of this CPU's measured matmul peak (in the compute
dtype), and peak RSS.
FLOPs are counted as 2 x (non-embedding parameters + LM head) per processed token (prompt and completion),
attention excluded, so the share is a lower bound. Greedy, bf16 by default; one warm-up batch first.
``--reader keyword`` stops each row once the keyword judge has read its window (revisions without that option
generate in full). With ``--compare``, both revisions' completions are judged by the working tree's keyword judge
and compared prompt by prompt.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_common_args, matmul_flops_per_token, matmul_peak_tflops, peak_rss_mb, run_benchmark


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    import torch

    from dcr.data import load_benchmark
    from dcr.generate import generate
    from dcr.judges import get_judge
    from dcr.models import load_model

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu")
    judge = get_judge("keyword")
    kw: dict[str, Any] = {}
    new_api = "reader_done" in inspect.signature(generate).parameters
    if args.reader == "keyword" and new_api:
        kw["reader_done"] = judge.has_read
    batch = args.batch if new_api or args.old_batch is None else args.old_batch
    rows = [{"id": f"{b}/{r.id}", "prompt": r.prompt} for b in args.benchmark.split(",")
            for r in load_benchmark(b, limit=args.prompts, seed=0)]
    generate(model, tok, rows[:2], None, 4, 2, progress=False)  # warm-up
    start = time.perf_counter()
    out = []
    for b in args.benchmark.split(","):  # one generate call per benchmark, as dcr evaluate does
        out += generate(model, tok, [r for r in rows if r["id"].startswith(b + "/")], None, args.new_tokens, batch,
                        progress=False, **kw)
    wall = time.perf_counter() - start
    completion = sum(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) for r in out)
    prompt = sum(len(tok(r["prompt"])["input_ids"]) for r in rows)
    flops_per_token = matmul_flops_per_token(model)
    peak = matmul_peak_tflops(args.threads)
    return {"tokens_per_s": completion / wall, "prompts_per_s": len(out) / wall, "wall_s": wall,
            "completion_tokens": completion,
            "pct_of_matmul_peak": 100 * flops_per_token * (prompt + completion) / wall / (peak * 1e12),
            "matmul_peak_tflops": peak, "peak_rss_mb": peak_rss_mb(),
            "completions": {r["id"]: [r["prompt"], r["completion"]] for r in out}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--benchmark", default="xstest", help="comma-separated prompt sets, one generate call each")
    ap.add_argument("--prompts", type=int, default=48, help="prompts per set (seeded subsample)")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--reader", choices=["none", "keyword"], default="none",
                    help="keyword: stop rows once the keyword judge's window is read (new revisions only)")
    ap.add_argument("--old-batch", type=int, help="batch size for a revision without --reader support (its default)")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"{args.model}, {args.prompts} prompts of {args.benchmark}, {args.new_tokens} new "
                  f"tokens, batch {args.batch}, {args.dtype}, {args.threads} threads",
                  {"tokens_per_s": "tokens/s", "prompts_per_s": "prompts/s", "wall_s": "wall s",
                   "pct_of_matmul_peak": "% of matmul peak",
                   "matmul_peak_tflops": "matmul peak TFLOP/s", "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
