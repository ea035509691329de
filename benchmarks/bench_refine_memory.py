"""Peak memory of one DCR refine step on a paper-sized model shape, built from its config with random weights.

    python benchmarks/bench_refine_memory.py --shape qwen2.5-7b --layer 13 --lora            # LoRA-DCR, truncated
    python benchmarks/bench_refine_memory.py --shape qwen2.5-1.5b --layer 13                 # full-parameter DCR
    python benchmarks/bench_refine_memory.py --shape qwen2.5-7b --layer 13 --lora --nll      # with the tail (NLL)

No download: the model is ``AutoModelForCausalLM.from_config`` of the published shape. Without ``--nll`` it has
blocks 0..l only, which is exactly what ``truncated_load`` holds (``dcr.refine.truncated``). Weights as the
refine stage keeps them: full-parameter = fp32 master weights under bf16 autocast; LoRA = bf16 frozen weights
with fp32 adapters (rank 16 on every linear of blocks 0..l). One step = the stage's ``train_step`` (Circle Loss
at layer l, + NLL with ``--nll``) and an AdamW step on a batch of ``--batch`` prompts of ``--tokens`` tokens.
Prints one JSON line: peak RSS of the process, parameter counts, and the step time.
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

from common import QWEN_SHAPES, peak_rss_mb

SHAPES = QWEN_SHAPES


def build(args: argparse.Namespace) -> tuple[object, int]:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    shape = dict(SHAPES[args.shape])
    n_layers = shape["num_hidden_layers"]
    if not args.nll:
        shape["num_hidden_layers"] = args.layer + 1  # truncated_load: the tail is never built
    config = Qwen2Config(**shape, max_position_embeddings=32768)
    dtype = torch.bfloat16 if args.lora else torch.float32
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    return model, n_layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    ap.add_argument("--layer", type=int, default=13)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--nll", action="store_true", help="keep the tail and add the NLL regulariser (lambda 0.001)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from dcr.refine.train import count_params, make_optimizer, setup_full, setup_lora, train_step

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, n_layers = build(args)
    built_s, built_rss = time.perf_counter() - start, peak_rss_mb()
    if args.lora:
        model = setup_lora(model, args.layer, 16, 32, 0.0, 0)
    else:
        setup_full(model, args.layer)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = count_params(model)
    opt, _ = make_optimizer(model, 1e-4, 0.0, 0)
    ids = torch.randint(0, 150000, (args.batch, args.tokens))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.tensor([i % 2 for i in range(args.batch)])
    cfg = SimpleNamespace(nll_weight=0.001 if args.nll else 0.0, truncate_forward=True, pooling="last", margin=0.25,
                          gamma=16.0, circle_variant="paper")
    step_start = time.perf_counter()
    parts = train_step(model, batch, labels, cfg, args.layer, torch.bfloat16)
    opt.step()
    opt.zero_grad(set_to_none=True)
    print(json.dumps({
        "shape": args.shape, "layer": args.layer, "mode": "lora" if args.lora else "full",
        "tail": "loaded (NLL on)" if args.nll else "never loaded (truncated)",
        "blocks_in_memory": n_layers if args.nll else args.layer + 1, "batch": args.batch, "tokens": args.tokens,
        "gradient_checkpointing": args.gradient_checkpointing, "params_total": params["total"],
        "params_trainable": params["trainable"], "rss_after_build_mb": round(built_rss),
        "peak_rss_mb": round(peak_rss_mb()), "build_s": round(built_s, 1),
        "step_s": round(time.perf_counter() - step_start, 1), "loss": round(parts["loss"], 4),
    }))


if __name__ == "__main__":
    main()
