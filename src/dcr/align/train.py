"""LoRA SFT pieces for the Hugging Face Trainer (A.3): encoding with response-only loss, collator, model, args.

Weights stay fp32 (so the LoRA delta is not lost to bf16 rounding when merged); compute runs under bf16
(or fp16) autocast where ``dcr.models.pick_dtype`` says so: on a CPU with avx512_bf16/AMX that is
several times faster than fp32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from dcr.align.config import AlignConfig
from dcr.chunked import chunked_cross_entropy, head_frozen
from dcr.prompts import adds_special_tokens, format_prompt, response_suffix

IGNORE = -100


def encode(tok: Any, row: dict[str, Any], template: str, max_length: int,
           loss_on_prompt: bool = False) -> dict[str, list[int]] | None:
    """Token ids and labels of prompt + response (+ end-of-turn when the answer is complete).

    Prompt and response are tokenised separately, so the label mask falls exactly on the boundary.
    Returns ``None`` when truncation to ``max_length`` leaves no response token.
    """
    prompt = tok(format_prompt(tok, row["prompt"], template),
                 add_special_tokens=adds_special_tokens(tok, template))["input_ids"]
    text = row["response"] + (response_suffix(tok, template) if row.get("complete", True) else "")
    resp = tok(text, add_special_tokens=False)["input_ids"]
    ids = (prompt + resp)[:max_length]
    if len(ids) <= len(prompt):
        return None
    labels = list(ids) if loss_on_prompt else [IGNORE] * len(prompt) + ids[len(prompt):]
    return {"input_ids": ids, "labels": labels}


class Collator:
    """Right-pad a micro-batch; padded positions get label -100 and attention 0."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, feats: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.full((len(feats), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(feats), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(feats), width), dtype=torch.long)
        for i, f in enumerate(feats):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.items[i]


def compute_dtype(cfg: AlignConfig) -> torch.dtype:
    from dcr.models import pick_device, pick_dtype

    return pick_dtype(cfg.dtype, pick_device(cfg.device))


def base_dtype(cfg: AlignConfig) -> torch.dtype:
    """dtype of the frozen base weights in training: bf16 when training computes in bf16 (``base_dtype: auto``),
    so autocast does not re-cast every weight every step; else fp32."""
    if cfg.base_dtype == "fp32":
        return torch.float32
    dt = compute_dtype(cfg)
    return dt if dt == torch.bfloat16 else torch.float32


def load_trainable(cfg: AlignConfig) -> tuple[Any, Any]:
    """The base model (frozen, in :func:`base_dtype`) wrapped with fp32 LoRA adapters on every attention/MLP
    linear, and its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dcr.models import contiguous_head, load_tokenizer, pick_device, resolve_model, training_attention, weights_for

    ref = resolve_model(cfg.model)
    torch.manual_seed(cfg.seed)
    base = AutoModelForCausalLM.from_pretrained(weights_for(ref, base_dtype(cfg)), dtype=base_dtype(cfg),
                                                attn_implementation=training_attention(cfg.device))
    base.to(pick_device(cfg.device))
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
    model = get_peft_model(contiguous_head(base), lora)
    if pick_device(cfg.device) == "cpu":
        from dcr.align.dropout import use_gap_dropout

        use_gap_dropout(model)  # same dropout distribution, fewer random draws (CPU draws are single-threaded)
    if cfg.fused_lora:
        from dcr.align.fused import fuse_lora

        fuse_lora(model)
    return model, load_tokenizer(ref)


def compute_context(model: Any, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` (default: the base weights' dtype) when it is bf16/fp16, with peft's cast of each
    LoRA input to the fp32 adapter dtype turned off: the adapters then compute in bf16 like the base (their
    weights and optimizer state stay fp32). 1.27x per micro-batch on SmolLM2 (CPU, BENCHMARKS.md)."""
    dtype = dtype or next(model.get_base_model().parameters()).dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    from peft.helpers import disable_input_dtype_casting

    stack = contextlib.ExitStack()
    stack.enter_context(disable_input_dtype_casting(model))
    stack.enter_context(torch.autocast(str(model.device).split(":")[0], dtype=dtype))
    return stack


def label_loss(model: Any, inputs: dict[str, torch.Tensor], num_items_in_batch: Any = None,
               wrapped: Any = None, chunk: int = 256, frozen_head: bool = False) -> torch.Tensor:
    """Causal-LM cross-entropy computed from the LM head at labelled positions only (prompt and padding positions
    never reach the vocabulary projection). Equal to the model's own loss: the mean over labelled tokens, or their
    sum over ``num_items_in_batch`` when the Trainer passes it (gradient accumulation).

    ``wrapped`` (a DistributedDataParallel wrapper of ``model``): the forward goes through it, so that DDP
    all-reduces the gradients; its LM head then runs on every position (the logits are sliced afterwards).
    ``frozen_head``: take each chunk's gradient in the forward (:func:`dcr.chunked.chunked_cross_entropy`) when
    the LM head has no trainable parameter (LoRA on the blocks); same loss, gradient equal up to float rounding.
    """
    base = model.get_base_model()
    labels = inputs["labels"][:, 1:]
    keep = labels != IGNORE
    args = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
    with compute_context(model):
        if wrapped is not None:
            logits = wrapped(**args).logits[:, :-1][keep].float()
        else:
            hidden = base.get_decoder()(**args)[0]
    if wrapped is None:  # the head a chunk of labelled tokens at a time: never a micro-batch's full logits
        total = chunked_cross_entropy(base.get_output_embeddings(), hidden[:, :-1][keep], labels[keep], chunk,
                                      frozen=frozen_head and head_frozen(base))
    else:
        total = torch.nn.functional.cross_entropy(logits, labels[keep], reduction="sum")
    denom = keep.sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(denom, device=total.device, dtype=total.dtype).clamp_min(1)


def sft_trainer(frozen_head: bool = False, **kw: Any) -> Any:
    """A ``transformers.Trainer`` whose loss is :func:`label_loss` (same value, less work)."""
    from transformers import Trainer

    class SFTTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            unwrapped = self.accelerator.unwrap_model(model)
            loss = label_loss(unwrapped, inputs, num_items_in_batch, model if model is not unwrapped else None,
                              frozen_head=frozen_head)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # num_items_in_batch counts every rank's tokens and DDP averages gradients over ranks: scale
                # back, as Trainer.compute_loss does (1 process: a no-op)
                loss = loss * self.accelerator.num_processes
            return (loss, None) if return_outputs else loss

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if self.args.train_sampling_strategy != "batch_rebalance":
                return super()._get_train_sampler(train_dataset)
            return rebalance_sampler(self.train_dataset if train_dataset is None else train_dataset, self.args)

    return SFTTrainer(**kw)


def rebalance_sampler(dataset: Any, args: Any) -> Any:
    """transformers' ``BatchRebalanceSampler`` seeded with the run's seed (the Trainer's own passes none, so
    every seed would see one order): per optimizer step a random set of micro x accumulation x processes
    examples, split into length-homogeneous micro-batches of balanced cost."""
    from transformers.trainer_pt_utils import BatchRebalanceSampler

    world = max(1, args.world_size)
    return BatchRebalanceSampler(
        lengths=[len(item["input_ids"]) for item in dataset],
        effective_batch_size=args.train_batch_size * args.gradient_accumulation_steps * world,
        dp_size=world, grad_accum=args.gradient_accumulation_steps, seed=args.seed,
        rank=args.process_index if world > 1 else 0, drop_last=args.dataloader_drop_last)


def training_args(cfg: AlignConfig, out: Path) -> Any:
    from transformers import TrainingArguments

    from dcr.models import pick_device

    dt = compute_dtype(cfg)
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear", optim="adamw_torch",
        weight_decay=cfg.weight_decay, logging_steps=cfg.log_every, logging_first_step=True,
        save_strategy="steps", save_steps=cfg.save_every, save_total_limit=2, report_to=[], seed=cfg.seed,
        bf16=dt == torch.bfloat16, fp16=dt == torch.float16, use_cpu=pick_device(cfg.device) == "cpu",
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
        train_sampling_strategy="batch_rebalance" if cfg.sampling == "rebalance" else "random",
        **_checkpointing_args(TrainingArguments, cfg.gradient_checkpointing),
    )


def _checkpointing_args(args_cls: type, enabled: bool) -> dict[str, Any]:
    """Activation checkpointing under the name the installed transformers uses (renamed from gradient_* in 5.x)."""
    from dcr.models import checkpointing_prefix

    prefix = checkpointing_prefix(args_cls)
    return {prefix: enabled, f"{prefix}_kwargs": {"use_reentrant": False}}
