"""Generation throughput on SmolLM2: batched vs one prompt at a time, fp32 vs bf16 (a markdown table).

    python benchmarks/bench_generate.py                       # 16 XSTest prompts, 64 new tokens
    python benchmarks/bench_generate.py --prompts 4 --new-tokens 16 --threads 1

Uses ``dcr.generate.generate`` (greedy, length-sorted batches), the code path of ``dcr evaluate``. Tokens are
the completion tokens actually produced (completions re-tokenised), so early stops at end-of-turn count less.
Run it on a quiet machine: on a CPU shared with other jobs, timings are meaningless (and more threads than
free cores can be an order of magnitude slower, so set --threads to the number of idle cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import torch

from dcr.data import load_benchmark
from dcr.generate import generate
from dcr.models import load_model


def run_once(model: Any, tok: Any, prompts: list[str], batch: int, new_tokens: int) -> tuple[float, int]:
    """(wall seconds, completion tokens) for greedy generation of all ``prompts``."""
    records = [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)]
    start = time.perf_counter()
    rows = generate(model, tok, records, None, max_new_tokens=new_tokens, batch_size=batch, progress=False)
    wall = time.perf_counter() - start
    tokens = sum(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) for r in rows)
    return wall, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=16, help="XSTest prompts (seeded subsample)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="16,1")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [r.prompt for r in load_benchmark("xstest", args.data_dir, args.prompts, seed=0)]
    rows = []
    for dtype in args.dtypes.split(","):
        model, tok = load_model(args.model, dtype=dtype, device="cpu")
        run_once(model, tok, prompts[:2], 2, 4)  # warm-up
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            wall, tokens = run_once(model, tok, prompts, batch, args.new_tokens)
            rows.append((dtype, batch, len(prompts), args.new_tokens, wall, len(prompts) / wall, tokens / wall))
        del model
    print(f"model {args.model}, CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| dtype | batch | prompts | max new tokens | wall s | prompts/s | tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dtype, batch, n, new, wall, pps, tps in rows:
        print(f"| {dtype} | {batch} | {n} | {new} | {wall:.1f} | {pps:.2f} | {tps:.1f} |")


if __name__ == "__main__":
    main()
