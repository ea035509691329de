"""Benchmark ``dcr refine`` training steps on SmolLM2-135M: tokens/s and peak memory.

Compares the truncated forward (stops after layer l; NLL off) with the full forward (runs the tail for the
NLL term), full-parameter with LoRA training, and bf16 autocast with fp32. Each configuration runs in its
own subprocess so that peak RSS is per configuration. Prints a markdown table.

    .venv/bin/python benchmarks/bench_refine.py [--model smollm2-135m] [--batch 16] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

CONFIGS = [  # (forward, params, precision)
    ("truncated", "full", "bf16"),
    ("full", "full", "bf16"),
    ("truncated", "lora", "bf16"),
    ("full", "lora", "bf16"),
    ("truncated", "full", "fp32"),
    ("full", "full", "fp32"),
]


def prompts(n: int) -> tuple[list[str], list[int]]:
    """``n`` training prompts, half XSTest safe, half HH-RLHF harmful (labels 0 / 1)."""
    from dcr.data import load_hh_harmful, xstest_split

    half = n // 2
    safe = [r.prompt for r in xstest_split(0.2, 0)[0][:half]]
    toxic = [r.prompt for r in load_hh_harmful()[: n - half]]
    return safe + toxic, [0] * len(safe) + [1] * len(toxic)


def run_one(model_name: str, forward: str, params: str, precision: str, batch: int, steps: int,
            threads: int) -> dict[str, Any]:
    """Time ``steps`` training steps (after one warm-up step) of one configuration in this process."""
    import torch

    from dcr.models import load_model
    from dcr.refine import RefineConfig
    from dcr.refine.features import default_layer, encode_prompts
    from dcr.refine.train import make_optimizer, setup_full, setup_lora, train_step
    from dcr.stage import PeakMemory

    torch.set_num_threads(threads)
    with PeakMemory() as mem:
        model, tok = load_model(model_name, dtype="fp32", device="cpu")
        layer = default_layer(model)
        model = setup_lora(model, layer, 16, 32, 0.0, 0) if params == "lora" else model
        if params == "full":
            setup_full(model, layer)
        cfg = RefineConfig(model=model_name, nll_weight=0.001 if forward == "full" else 0.0, batch_size=batch)
        opt, _ = make_optimizer(model, cfg.lr, 0.0, 0)
        texts, labels = prompts(batch)
        enc = encode_prompts(tok, texts, cfg.template, cfg.max_length)
        y = torch.tensor(labels)
        autocast = torch.bfloat16 if precision == "bf16" else None
        model.train()
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            train_step(model, enc, y, cfg, layer, autocast)
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
    tokens = int(enc["attention_mask"].sum())
    step_s = sum(times[1:]) / steps
    return {"forward": forward, "params": params, "precision": precision, "layer": layer, "batch": batch,
            "tokens_per_step": tokens, "step_s": round(step_s, 3), "tokens_per_s": round(tokens / step_s, 1),
            "peak_rss_mb": round(mem.peak_rss / 2**20)}


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["forward", "params", "precision", "layer", "batch", "tokens_per_step", "step_s", "tokens_per_s",
            "peak_rss_mb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help="internal: forward,params,precision to run in this process")
    args = ap.parse_args()
    if args.one:
        forward, params, precision = args.one.split(",")
        print(json.dumps(run_one(args.model, forward, params, precision, args.batch, args.steps, args.threads)))
        return
    rows = []
    for forward, params, precision in CONFIGS:
        cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch), "--steps",
               str(args.steps), "--threads", str(args.threads), "--one", f"{forward},{params},{precision}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{forward},{params},{precision} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {forward} {params} {precision}: {rows[-1]['tokens_per_s']} tok/s", file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()
