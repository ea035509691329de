"""Where a full-parameter refine step spends its time: ``torch.profiler`` over a few real steps of the stage's own
training loop pieces (the model prepared as ``dcr refine`` prepares it), plus wall time per phase.

    python benchmarks/profile_refine.py --model ~/.cache/dcr/models/qwen2.5-coder-0.5b --layer 11 \
        --micro-batch 8 [--gradient-checkpointing] --steps 2

Prints the top aten ops by self CPU time and the seconds of each phase of a step (loss and backward, gradient
clipping, AdamW, zeroing). The figures move with the machine's load: read them as shares, not absolutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--layer", type=int, required=True)
    ap.add_argument("--micro-batch", type=int)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=2, help="profiled steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--shapes", action="store_true", help="group the table by input shapes")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dcr.refine.config import RefineConfig
    from dcr.refine.data import balanced_batches, build_data, steps_per_epoch
    from dcr.refine.features import encode_prompts
    from dcr.refine.stage import _load, autocast_dtype, prepare_trainable
    from dcr.refine.step import loss_and_backward
    from dcr.refine.train import make_optimizer

    cfg = RefineConfig(model=args.model, layer=args.layer, micro_batch=args.micro_batch, limit=200,
                       max_length=128, gradient_checkpointing=args.gradient_checkpointing, memory_check=False,
                       data_dir=args.data_dir)
    data = build_data(cfg.data_dir, cfg.xstest_heldout_frac, cfg.split_seed, cfg.seed, cfg.toxic_ratio,
                      cfg.limit, cfg.eval_toxic)
    model, tok, layer, _ = _load(cfg)
    model, _ = prepare_trainable(model, cfg, layer)
    model.train()
    prompts, labels = data.train_items()
    spe = steps_per_epoch(len(prompts), cfg.batch_size)
    batches = balanced_batches(labels, cfg.batch_size, cfg.seemingly_frac, spe, cfg.seed)
    opt, _ = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.fused_adamw)
    trainable = [p for p in model.parameters() if p.requires_grad]
    autocast = autocast_dtype(cfg.dtype, "cpu")
    phases: dict[str, float] = {}

    def step(i: int, record: bool) -> None:
        idx = batches[i]
        batch = encode_prompts(tok, [prompts[j] for j in idx], cfg.template, cfg.max_length)
        y = torch.tensor([labels[j] for j in idx])
        marks = [time.perf_counter()]
        loss_and_backward(model, batch, y, cfg, layer, autocast)
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        marks.append(time.perf_counter())
        opt.step()
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if record:
            for name, a, b in zip(("loss+backward", "clip", "adamw", "zero_grad"), marks, marks[1:]):
                phases[name] = phases.get(name, 0.0) + b - a

    step(0, False)
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for i in range(1, 1 + args.steps):
            step(i, True)
    total = time.perf_counter() - start
    table = prof.key_averages(group_by_input_shape=args.shapes)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))
    print(f"{args.steps} steps, {total:.1f} s under the profiler; per phase (s per step):")
    for name, s in phases.items():
        print(f"  {name:14s} {s / args.steps:7.2f}")


if __name__ == "__main__":
    main()
