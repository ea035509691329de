"""Training throughput of the align stage's LoRA SFT (HF Trainer, as ``dcr.align`` sets it up) on SmolLM2.

    python benchmarks/bench_align.py                        # quickstart: 128 pairs, micro-batch 8 x 2, 2 epochs
    python benchmarks/bench_align.py --size medium          # 384 pairs, micro-batch 8 x 4, 1 epoch
    python benchmarks/bench_align.py --compare HEAD~3       # the same measurement against another revision
    python benchmarks/bench_align.py --fused-lora off        # this tree without the fused LoRA forward

Builds the training mix from safety pairs only (no teacher generation), the model and the Trainer with the
stage's own functions, and times ``trainer.train()`` alone (no tracking, no merge). Tokens are the non-padding
tokens of the encoded examples times the epochs. Prints tokens/s, the model FLOP/s as a share of this CPU's bf16
matmul peak (6 x forward matmul FLOPs per token, LoRA's own FLOPs left out) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import add_common_args, matmul_flops_per_token, matmul_peak_tflops, peak_rss_mb, run_benchmark

SIZES = {"quickstart": dict(n_safety=128, epochs=2.0, micro_batch=8, grad_accum=2, max_length=160),
         "medium": dict(n_safety=384, epochs=1.0, micro_batch=8, grad_accum=4, max_length=256),
         "short": dict(n_safety=64, epochs=1.0, micro_batch=8, grad_accum=2, max_length=192)}  # 4 steps (1.5B)


def measure(args: argparse.Namespace) -> dict[str, float]:
    import torch
    from transformers import PrinterCallback, Trainer

    from dcr.align import train as align_train
    from dcr.align.config import AlignConfig
    from dcr.align.data import build_mix

    torch.set_num_threads(args.threads)
    extra = {} if args.fused_lora is None else {"fused_lora": args.fused_lora == "on"}  # older revisions lack it
    cfg = AlignConfig(model=args.model, n_general=0, track_every=0, save_every=10_000, lr=5e-4,
                      **SIZES[args.size], **extra)
    with tempfile.TemporaryDirectory() as tmp:
        rows, _ = build_mix(cfg, Path(tmp))
        model, tok = align_train.load_trainable(cfg)
        items = [x for x in (align_train.encode(tok, r, cfg.template, cfg.max_length) for r in rows) if x]
        make = getattr(align_train, "sft_trainer", Trainer)  # the revision's own Trainer (older ones: plain)
        fused = {"frozen_head": True} if getattr(cfg, "fused_lora", False) else {}  # as dcr.align.stage passes it
        trainer = make(**fused, model=model, args=align_train.training_args(cfg, Path(tmp)),
                          train_dataset=align_train.ListDataset(items),
                          data_collator=align_train.Collator(tok.pad_token_id))
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    tokens = sum(len(x["input_ids"]) for x in items) * cfg.epochs
    fwd = matmul_flops_per_token(model.get_base_model())
    peak = matmul_peak_tflops(args.threads)
    return {"tokens_per_s": tokens / seconds, "train_s": seconds,
            "pct_of_matmul_peak": 100 * 3 * fwd * tokens / seconds / (peak * 1e12), "matmul_peak_tflops": peak,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--size", choices=sorted(SIZES), default="quickstart")
    ap.add_argument("--fused-lora", choices=["on", "off"], help="AlignConfig.fused_lora (default: the config's)")
    add_common_args(ap)
    args = ap.parse_args()
    run_benchmark(args, measure, f"align (LoRA SFT) {args.model}, {args.size} sizes, {args.threads} threads",
                  {"tokens_per_s": "tokens/s", "train_s": "train s", "pct_of_matmul_peak": "% of matmul peak",
                   "peak_rss_mb": "peak RSS MB"})


if __name__ == "__main__":
    main()
