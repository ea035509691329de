"""The DCR training step: choose the trainable parameters (blocks <= l, embeddings, or LoRA) and optimise
Circle Loss at layer l plus lambda * prompt NLL.

Trainable set (paper: full-parameter, tail frozen):

- full: the input embeddings and decoder blocks ``0..l``. Blocks ``> l``, the final norm and the LM head are
  frozen. When the LM head is tied to the embeddings (SmolLM2, Gemma), ``tied_embeddings=freeze`` (default)
  keeps the embeddings frozen, so the LM head stays bit-identical; ``untie`` gives the LM head its own copy of
  the original matrix (``tie_word_embeddings=False`` in the saved config) and trains the embeddings.
- LoRA: adapters on every linear layer of blocks ``0..l``; everything else frozen; merged before saving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dcr.dist import average_gradients, is_main, rank, sum_all, world_size
from dcr.models import get_layers
from dcr.refine.anchor import Anchor, anchor_backward
from dcr.refine.checkpoint import load_checkpoint, save_checkpoint
from dcr.refine.features import encode_prompts
from dcr.refine.step import loss_and_backward
from dcr.stage import HeapGuard


def embeddings_tied(model: Any) -> bool:
    """Whether the LM head shares its weight tensor with the input embeddings."""
    head = model.get_output_embeddings()
    return head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def untie_embeddings(model: Any) -> None:
    """Give the LM head its own copy of the (tied) embedding matrix and record that in the config."""
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
            cfg.tie_word_embeddings = False
    if embeddings_tied(model):
        raise RuntimeError("could not untie the LM head from the input embeddings")


def lora_targets(model: Any, layer: int) -> list[str]:
    """Qualified names of the ``nn.Linear`` modules inside decoder blocks ``0..layer`` (LoRA targets)."""
    blocks = get_layers(model)
    prefix = next(name for name, mod in model.named_modules() if mod is blocks)
    keep = tuple(f"{prefix}.{i}." for i in range(layer + 1))
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(keep)]


def setup_full(model: Any, layer: int, tied_embeddings: str = "freeze") -> dict[str, Any]:
    """Freeze everything but blocks ``0..layer`` and (unless tied and frozen) the embeddings. Returns a summary."""
    tied = embeddings_tied(model)
    if tied and tied_embeddings == "untie":
        untie_embeddings(model)
    model.requires_grad_(False)
    for block in list(get_layers(model))[: layer + 1]:
        block.requires_grad_(True)
    train_emb = not tied or tied_embeddings == "untie"
    model.get_input_embeddings().requires_grad_(train_emb)
    return {"tied": tied, "train_embeddings": train_emb}


def setup_lora(model: Any, layer: int, r: int, alpha: int, dropout: float, seed: int) -> Any:
    """Wrap ``model`` with LoRA adapters on the linear layers of blocks ``0..layer``; returns the PeftModel."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(model, layer),
                     bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def count_params(model: Any) -> dict[str, int]:
    """Trainable and total parameter counts."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def make_optimizer(model: Any, lr: float, weight_decay: float, warmup_steps: int,
                   fused: bool = False) -> tuple[Any, Any]:
    """AdamW over the trainable parameters with linear warm-up to a constant learning rate. ``fused``: torch's
    fused kernel (one pass over each parameter and its state instead of a chain of elementwise ops; the same
    update up to float rounding), else torch's default for the device (a per-tensor loop on CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError("no trainable parameters: check layer, lora and tied_embeddings")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **({"fused": True} if fused else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup_steps + 1)))
    return opt, sched


def train_step(
    model: Any, batch: dict[str, torch.Tensor], labels: torch.Tensor, cfg: Any, layer: int,
    autocast: torch.dtype | None, center: torch.Tensor | None = None,
) -> dict[str, float]:
    """Forward (stopping after ``layer`` when the NLL term is off), loss, backward (``dcr.refine.step``: the
    NLL from the LM head in token chunks, gradient caching over ``cfg.micro_batch``). Returns the loss parts."""
    return loss_and_backward(model, batch, labels, cfg, layer, autocast, center)


def train(
    model: Any, tok: Any, prompts: list[str], labels: list[int], batches: list[list[int]], cfg: Any, layer: int,
    steps_per_epoch: int, autocast: torch.dtype | None = None, log: Callable[[str], None] | None = None,
    ckpt: tuple[Path, str] | None = None, center: torch.Tensor | None = None, anchor: Anchor | None = None,
) -> list[dict[str, float]]:
    """Run the optimisation over ``batches`` (lists of indices into ``prompts``); returns one row per step.

    With ``ckpt = (dir, stamp)`` the state is saved every ``cfg.save_every`` steps and a run with the same
    stamp resumes from it: the remaining steps and rows are those of an uninterrupted run. ``center``: the fixed
    vector subtracted from every feature (``RefineConfig.center``; computed from the base model by the caller).
    ``anchor``: the general answers of the response-side regulariser (``dcr.refine.anchor``), added every step.
    """
    device = next(model.parameters()).device
    opt, sched = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.warmup_steps, getattr(cfg, "fused_adamw", False))
    trainable = [p for p in model.parameters() if p.requires_grad]
    done, rows = load_checkpoint(ckpt[0], ckpt[1], model, opt, sched) if ckpt else (0, [])
    if done and log is not None:
        log(f"resumed: {done} of {len(batches)} steps from {ckpt[0] if ckpt else ''}")
    model.train()
    guard = HeapGuard() if device.type == "cpu" else None
    start = time.time() - (rows[-1]["seconds"] if rows else 0.0)
    tokens = int(rows[-1]["tokens"]) if rows else 0
    for step in range(done, len(batches)):
        idx = batches[step][rank()::world_size()]  # several processes: each takes its share of the batch
        batch = encode_prompts(tok, [prompts[i] for i in idx], cfg.template, cfg.max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        y = torch.tensor([labels[i] for i in idx], device=device)
        parts = train_step(model, batch, y, cfg, layer, autocast, center)
        if anchor is not None:
            parts["anchor"] = anchor_backward(model, tok, anchor, step, cfg, autocast)
            parts["loss"] += anchor.weight * parts["anchor"]
        average_gradients(trainable)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if guard is not None:
            guard.step()
        tokens += int(sum_all(batch["attention_mask"].sum()))
        rows.append({"step": step + 1, "epoch": step // steps_per_epoch + 1, **parts, "lr": sched.get_last_lr()[0],
                     "tokens": tokens, "seconds": round(time.time() - start, 3)})
        if log is not None:
            log(f"step {step + 1}/{len(batches)} loss {parts['loss']:.4f} circle {parts['circle']:.4f} "
                f"nll {parts['nll']:.4f}" + (f" anchor {parts['anchor']:.4f}" if "anchor" in parts else ""))
        if ckpt and cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < len(batches) and is_main():
            save_checkpoint(ckpt[0], ckpt[1], step + 1, model, opt, sched, rows)
    model.eval()
    return rows
