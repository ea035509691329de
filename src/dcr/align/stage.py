"""``align(cfg, out_dir)``: STL / STL-aug LoRA SFT from data to a merged model, with refusal tracking.

Outputs in ``OUT``: ``adapter/`` (PEFT), ``model/`` (merged HF dir in ``save_dtype``), ``train_data.jsonl``,
``train_log.csv``, ``tracking.csv``, ``results.jsonl``, ``checkpoints/`` (kept for resume, also after a failure),
``teacher/`` (cached teacher answers), plus ``manifest.json`` and ``stage.log`` from run_stage.

Weights stay fp32 during training (so the LoRA delta is not lost to bf16 rounding when merged); compute runs
under bf16 (or fp16) autocast where ``dcr.models.pick_dtype`` says so.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from dcr.align.config import AlignConfig
from dcr.align.data import build_mix, normalize_prompt
from dcr.align.tracking import RefusalTracker, TrainLog, TrimHeap, probe_sets
from dcr.align.train import (
    Collator,
    ListDataset,
    compute_dtype,
    encode,
    load_trainable,
    sft_trainer,
    training_args,
)
from dcr.dist import barrier, is_main, main_first, world_size
from dcr.io import atomic_dir, write_jsonl
from dcr.models import pick_device
from dcr.stage import release_memory, run_stage

log = logging.getLogger("dcr.align")
RESUMABLE = ("checkpoints", "teacher", "tracking.csv", "train_log.csv")


def merge(cfg: AlignConfig, out: Path, tok: Any) -> Path:
    """Merge ``OUT/adapter`` into a fresh fp32 copy of the base; save ``OUT/model`` in ``save_dtype``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dcr.models import resolve_model, save_model, saved_dtype

    base = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload()
    return save_model(merged, tok, out / "model", dtype=saved_dtype(cfg.save_dtype, compute_dtype(cfg)))


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


def _run_align(cfg: AlignConfig, out: Path, callbacks: list[Any], force: bool = False) -> dict[str, Any]:
    """The body of the stage: mix, encode, train (resuming from the last checkpoint), merge, record."""
    from transformers import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    with main_first():  # the main process answers with the teacher (cached); the other ranks then read it
        rows, stats = build_mix(cfg, out)  # validates the data inputs before any resume state is touched
        if is_main():
            _prepare_resume(cfg, out, force)
            write_jsonl(out / "train_data.jsonl", rows)
    log.info("training mix: %s", stats)
    model, tok = load_trainable(cfg)
    items = _encode_all(tok, rows, cfg)
    stats["n_dropped_too_long"] = len(rows) - len(items)
    cbs: list[Any] = [TrainLog(out / "train_log.csv")] if is_main() else []
    if pick_device(cfg.device) == "cpu":
        cbs.append(TrimHeap())
    if cfg.track_every > 0 and is_main():
        probes = probe_sets(cfg, {normalize_prompt(r["prompt"]) for r in rows})
        stats["probe_n"] = {g: len(p) for g, p in probes.items()}
        dt = compute_dtype(cfg)
        cbs.append(RefusalTracker(tok, probes, cfg, out / "tracking.csv", None if dt == torch.float32 else dt))
    trainer = sft_trainer(frozen_head=cfg.fused_lora, model=model, args=training_args(cfg, out),
                          train_dataset=ListDataset(items),
                          data_collator=Collator(tok.pad_token_id), callbacks=cbs + list(callbacks))
    trainer.remove_callback(PrinterCallback)  # TrainLog logs to stage.log instead of printing dicts
    ckpt_dir = out / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    stats.update({"resumed_from": last, "global_step": trainer.state.global_step, "world_size": world_size(),
                  "train_loss": round(float(result.training_loss), 6),
                  "effective_batch": cfg.effective_batch * world_size()})
    if is_main():
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp)
    del trainer, model  # the training model and its optimizer state go before the fp32 merge loads the base
    release_memory()
    if is_main():
        merge(cfg, out, tok)
        _record(cfg, out, stats)
    barrier()
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
    """STL / STL-aug safety alignment: LoRA SFT on general + refusal pairs, tracking refusal as it trains.

    Skipped when ``out_dir`` holds a finished run with the same key. ``callbacks`` are extra
    ``TrainerCallback`` objects (used by tests to interrupt a run).
    """
    upstream = {"model": cfg.model, "teacher": None if cfg.teacher == "self" else cfg.teacher,
                "exclude_from": cfg.exclude_from}
    return run_stage("align", cfg, out_dir, lambda o: _run_align(cfg, o, callbacks or [], force),
                     upstream=upstream, force=force, keep=RESUMABLE)[0]
