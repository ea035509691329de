"""GPU check: refine and align step times, peak CUDA memory and generation throughput on paper-sized shapes.

    bash benchmarks/gpu_check.sh                  # on a GPU machine, no network: Qwen2.5-1.5B and 7B shapes
    python benchmarks/gpu_check.py --shapes tiny --device cpu --out /tmp/g.json   # the CPU smoke test (CI)

Models are built from their published configs with random weights (no download). For each shape it times, with
the stages' own functions: a DCR refine step (truncated LoRA-DCR at layer 13, batch 32 x 64 tokens: Circle Loss
at layer l + AdamW), a full-parameter refine step on the 1.5B shape, an align LoRA SFT micro-batch (label-only
loss, batch 8 x 256 tokens, bf16 base + fp32 adapters), and greedy generation (batch 64, 128 new tokens). Writes
one JSON file (``--out``) that the report's cost table can show: per measurement seconds, tokens/s and peak
memory (CUDA ``max_memory_allocated`` on GPU, process peak RSS on CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from common import QWEN_SHAPES, peak_rss_mb

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True),
    **QWEN_SHAPES,
}


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def _reset(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()


def _model(shape: str, layers: int | None, dtype: Any, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    spec = dict(SHAPES[shape])
    if layers is not None:
        spec["num_hidden_layers"] = layers
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(Qwen2Config(**spec, max_position_embeddings=4096), dtype=dtype)


def _timed(device: str, fn: Any) -> float:
    import torch

    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def refine_step(shape: str, device: str, lora: bool, layer: int, batch: int, tokens: int) -> dict[str, Any]:
    """One truncated DCR step (Circle Loss at ``layer``, AdamW), as ``dcr refine`` runs it with nll_weight 0."""
    from types import SimpleNamespace

    import torch

    from dcr.refine.train import make_optimizer, setup_full, setup_lora, train_step

    _reset(device)
    layer = min(layer, SHAPES[shape]["num_hidden_layers"] - 1)
    model = _model(shape, layer + 1, torch.bfloat16 if lora else torch.float32, device)
    model = setup_lora(model, layer, 16, 32, 0.0, 0) if lora else model
    if not lora:
        setup_full(model, layer)
    model.train()
    opt, _ = make_optimizer(model, 1e-4, 0.0, 0)
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, tokens), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.arange(batch, device=device) % 2
    cfg = SimpleNamespace(nll_weight=0.0, truncate_forward=True, pooling="last", margin=0.25, gamma=16.0,
                          circle_variant="paper")

    def step() -> None:
        train_step(model, inputs, labels, cfg, layer, torch.bfloat16)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (allocator, kernels)
    seconds = _timed(device, step)
    return {"what": f"refine {'LoRA' if lora else 'full'}-DCR, layer {layer}, batch {batch}x{tokens}",
            "seconds": round(seconds, 3), "tokens_per_s": round(batch * tokens / seconds, 1),
            "peak_mb": round(_peak_mb(device))}


def align_step(shape: str, device: str, batch: int, tokens: int) -> dict[str, Any]:
    """One align LoRA SFT micro-batch (label-only loss, bf16 base, fp32 adapters) with backward."""
    import torch
    from peft import LoraConfig, get_peft_model

    from dcr.align.train import label_loss

    _reset(device)
    model = get_peft_model(_model(shape, None, torch.bfloat16, device),
                           LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    model.train()
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, tokens), device=device)
    labels = ids.clone()
    labels[:, : tokens // 2] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    label_loss(model, inputs).backward()
    seconds = _timed(device, lambda: label_loss(model, inputs).backward())
    return {"what": f"align LoRA SFT micro-batch {batch}x{tokens}", "seconds": round(seconds, 3),
            "tokens_per_s": round(batch * tokens / seconds, 1), "peak_mb": round(_peak_mb(device))}


def generation(shape: str, device: str, batch: int, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    """Greedy generation throughput (completion tokens/s), bf16, as ``dcr evaluate`` generates."""
    import torch

    _reset(device)
    model = _model(shape, None, torch.bfloat16, device).eval()
    ids = torch.randint(0, SHAPES[shape]["vocab_size"], (batch, prompt_tokens), device=device)

    def run() -> None:
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    seconds = _timed(device, run)
    return {"what": f"greedy generation batch {batch}, {new_tokens} new tokens", "seconds": round(seconds, 3),
            "tokens_per_s": round(batch * new_tokens / seconds, 1), "peak_mb": round(_peak_mb(device))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="qwen2.5-1.5b,qwen2.5-7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()
    import torch

    small = args.shapes == "tiny"
    rows: list[dict[str, Any]] = []
    for shape in args.shapes.split(","):
        sizes = dict(batch=4, tokens=16) if small else dict(batch=32, tokens=64)
        rows.append({"shape": shape, **refine_step(shape, args.device, True, 13, **sizes)})
        if shape in ("qwen2.5-1.5b", "tiny"):
            rows.append({"shape": shape, **refine_step(shape, args.device, False, 13, **sizes)})
        rows.append({"shape": shape, **align_step(shape, args.device, 2 if small else 8, 32 if small else 256)})
        rows.append({"shape": shape, **generation(shape, args.device, 4 if small else 64, 16 if small else 64,
                                                  8 if small else 128)})
        print(json.dumps(rows[-1]), flush=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    result = {"device": device_name, "torch": torch.__version__, "measurements": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
