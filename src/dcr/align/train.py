"""LoRA SFT with the Hugging Face Trainer (A.3): response-only loss, checkpoints for resume, fp32 merge.

Weights stay fp32 (so the LoRA delta is not lost to bf16 rounding when merged); compute runs under bf16
(or fp16) autocast where ``dcr.models.pick_dtype`` says so: on a CPU with avx512_bf16/AMX that is
several times faster than fp32.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from dcr.align.config import AlignConfig
from dcr.align.data import build_mix, normalize_prompt
from dcr.align.tracking import RefusalTracker, TrainLog, probe_sets
from dcr.io import read_jsonl, write_jsonl
from dcr.prompts import adds_special_tokens, format_prompt, response_suffix
from dcr.stage import run_stage

log = logging.getLogger("dcr.align")
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


def load_trainable(cfg: AlignConfig) -> tuple[Any, Any]:
    """The fp32 base model wrapped with LoRA adapters on every attention/MLP linear, and its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dcr.models import load_tokenizer, pick_device, resolve_model

    ref = resolve_model(cfg.model)
    torch.manual_seed(cfg.seed)
    base = AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32).to(pick_device(cfg.device))
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_targets, task_type="CAUSAL_LM")
    return get_peft_model(base, lora), load_tokenizer(ref)


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
    )


def _save_dir_atomic(out: Path, name: str, save: Any) -> Path:
    """Call ``save(tmp_dir)`` then move the result to ``out/name`` (never half-written)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        save(tmp)
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / name


def merge(cfg: AlignConfig, out: Path, tok: Any) -> Path:
    """Merge ``OUT/adapter`` into a fresh fp32 copy of the base; save ``OUT/model`` in ``merge_dtype``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dcr.models import pick_dtype, resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload()
    merged = merged.to(pick_dtype(cfg.merge_dtype, "cpu"))

    def save(d: Path) -> None:
        merged.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)

    return _save_dir_atomic(out, "model", save)


def _encode_all(tok: Any, rows: list[dict[str, Any]], cfg: AlignConfig) -> list[dict[str, list[int]]]:
    items = [encode(tok, r, cfg.template, cfg.max_length, cfg.loss_on_prompt) for r in rows]
    kept = [x for x in items if x is not None]
    if not kept:
        from dcr.errors import ConfigError

        raise ConfigError(f"no training example keeps a response token within max_length={cfg.max_length}. "
                          "Fix: raise max_length")
    return kept


def _prepare_resume(cfg: AlignConfig, out: Path, force: bool) -> None:
    """Keep checkpoints and logs only when they come from this exact config (and not ``force``)."""
    from dcr.config import config_hash

    stamp = out / "checkpoints" / "CONFIG_HASH"
    key = config_hash(cfg)
    if force or not stamp.exists() or stamp.read_text().strip() != key:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        for name in ("tracking.csv", "train_log.csv"):
            (out / name).unlink(missing_ok=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")


def _train(cfg: AlignConfig, out: Path, callbacks: list[Any], force: bool = False) -> dict[str, Any]:
    from transformers import PrinterCallback, Trainer
    from transformers.trainer_utils import get_last_checkpoint

    _prepare_resume(cfg, out, force)
    rows, stats = build_mix(cfg, out)
    write_jsonl(out / "train_data.jsonl", rows)
    log.info("training mix: %s", stats)
    model, tok = load_trainable(cfg)
    items = _encode_all(tok, rows, cfg)
    stats["n_dropped_too_long"] = len(rows) - len(items)
    cbs: list[Any] = [TrainLog(out / "train_log.csv")]
    if cfg.track_every > 0:
        probes = probe_sets(cfg, {normalize_prompt(r["prompt"]) for r in rows})
        stats["probe_n"] = {g: len(p) for g, p in probes.items()}
        dt = compute_dtype(cfg)
        cbs.append(RefusalTracker(tok, probes, cfg, out / "tracking.csv", None if dt == torch.float32 else dt))
    trainer = Trainer(model=model, args=training_args(cfg, out), train_dataset=ListDataset(items),
                      data_collator=Collator(tok.pad_token_id), callbacks=cbs + list(callbacks))
    trainer.remove_callback(PrinterCallback)  # TrainLog logs to stage.log instead of printing dicts
    ckpt_dir = out / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    _save_dir_atomic(out, "adapter", lambda d: model.save_pretrained(d))
    merge(cfg, out, tok)
    stats.update({"resumed_from": last, "global_step": trainer.state.global_step,
                  "train_loss": round(float(result.training_loss), 6), "effective_batch": cfg.effective_batch})
    _record(cfg, out, stats)
    return stats


def _record(cfg: AlignConfig, out: Path, stats: dict[str, Any]) -> None:
    from dcr.results import record

    base = {"model": str(out), "stage": "align", "method": cfg.method, "seed": cfg.seed}
    record(out, **base, metric="train_loss", value=stats["train_loss"], n=stats["n_total"])
    track = out / "tracking.csv"
    if track.exists():
        import csv

        with open(track, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for step_kind, step in (("start", min(int(r["step"]) for r in rows)),
                                ("end", max(int(r["step"]) for r in rows))):
            for r in (x for x in rows if int(x["step"]) == step):
                for metric in ("refusal_prob", "refusal_rate"):
                    record(out, **base, benchmark=f"track-{r['group']}", metric=metric, value=float(r[metric]),
                           n=int(r["n"]), step=step, when=step_kind, judge=cfg.judge)


def align(cfg: AlignConfig, out_dir: str | Path, force: bool = False, callbacks: list[Any] | None = None) -> Path:
    """Run STL / STL-aug LoRA SFT into ``out_dir`` (skipped when already done with the same config).

    ``callbacks`` are extra ``TrainerCallback`` objects (used by tests to interrupt a run).
    """
    from dcr.models import resolve_model

    inputs = {"model": resolve_model(cfg.model)}
    if cfg.teacher != "self":
        inputs["teacher"] = resolve_model(cfg.teacher)
    out, _ = run_stage("align", cfg, out_dir, lambda o: _train(cfg, o, callbacks or [], force),
                       inputs=inputs, force=force)
    return out


def load_train_data(out_dir: str | Path) -> list[dict[str, Any]]:
    """The training rows an align run used (``OUT/train_data.jsonl``)."""
    return read_jsonl(Path(out_dir) / "train_data.jsonl")
