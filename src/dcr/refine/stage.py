"""``refine(cfg, out_dir)``: the DCR stage from data to a saved model, loss curve and separability metrics.

Outputs in ``OUT``: ``model/`` (HF safetensors + tokenizer), ``config.yaml``, ``split.json``, ``loss.csv``,
``loss.png``, ``metrics.json``, ``results.jsonl``, plus ``manifest.json`` and ``stage.log`` from run_stage.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from dcr import results
from dcr.dist import barrier, is_main
from dcr.fingerprint import short_hash
from dcr.io import atomic_open, write_json, write_table
from dcr.models import (
    checkpointing_prefix,
    load_model,
    load_tokenizer,
    model_config,
    num_layers,
    own_storage,
    pick_device,
    pick_dtype,
    resolve_model,
    save_model,
    saved_dtype,
    training_attention,
)
from dcr.refine.anchor import build_anchor
from dcr.refine.config import RefineConfig
from dcr.refine.confound import confound_scores, confound_sets, score_records
from dcr.refine.data import RefineData, make_batches, refine_data, steps_per_epoch
from dcr.refine.features import check_layer, class_mean_center, default_layer, extract_features
from dcr.refine.metrics import separability
from dcr.refine.retention import measure, verdict, write_generations
from dcr.refine.train import count_params, embeddings_tied, setup_full, setup_lora, train
from dcr.refine.truncated import load_truncated, splice_save
from dcr.stage import release_memory, run_stage

log = logging.getLogger("dcr.refine")
TRAIN_EVAL = 50  # training prompts per class scored as the in-distribution reference in metrics.json


def set_checkpointing(model: Any, on: bool) -> None:
    """Activation checkpointing on or off, under the name the installed transformers uses (renamed in 5.x)."""
    prefix = checkpointing_prefix(model)
    if on:
        getattr(model, f"{prefix}_enable")(**{f"{prefix}_kwargs": {"use_reentrant": False}})
    else:
        getattr(model, f"{prefix}_disable")()


def autocast_dtype(dtype: str, device: str) -> torch.dtype | None:
    """bf16 autocast (over fp32 master weights) when ``pick_dtype`` chooses bf16, else none (plain fp32)."""
    return torch.bfloat16 if pick_dtype(dtype, device) == torch.bfloat16 else None


def layer_features(model: Any, tok: Any, cfg: RefineConfig, layer: int) -> Callable[[list[str]], torch.Tensor]:
    """prompts -> their normalised layer-``layer`` features ``[N, d]``, at training precision."""
    def feats(prompts: list[str]) -> torch.Tensor:
        return extract_features(model, tok, prompts, layer, cfg.pooling, cfg.template, cfg.max_length,
                                cfg.eval_batch_size, autocast_dtype(cfg.dtype, str(model.device)))

    return feats


def evaluate_sets(model: Any, tok: Any, data: RefineData, cfg: RefineConfig, layer: int) -> dict[str, Any]:
    """Separability of held-out XSTest safe prompts vs each held-out toxic set at ``layer``, plus ``train``:
    up to TRAIN_EVAL training prompts per class (in-distribution reference).

    Features come from the same precision as training (bf16 autocast under ``dtype=auto`` on bf16 hardware);
    the statistics are computed in fp32.
    """
    feats = layer_features(model, tok, cfg, layer)

    def score(safe: torch.Tensor, toxic: torch.Tensor) -> dict[str, float]:
        y = torch.tensor([0] * len(safe) + [1] * len(toxic))
        return separability(torch.cat([safe, toxic]), y, cfg.seed)

    out: dict[str, Any] = {}
    if data.heldout:  # xstest_heldout_frac=0 holds nothing out: only the training-fit reference below
        safe = feats([r.prompt for r in data.heldout])
        out = {name: score(safe, feats([r.prompt for r in recs])) for name, recs in data.eval_toxic.items()}
    k = min(TRAIN_EVAL, len(data.seemingly), len(data.toxic))  # in-distribution reference: did training fit?
    out["train"] = score(feats([r.prompt for r in data.seemingly[:k]]), feats([r.prompt for r in data.toxic[:k]]))
    return out


def plot_loss(rows: list[dict[str, float]], path: Path) -> None:
    """Loss, circle and weighted NLL per step as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["loss"] for r in rows], label="total")
    ax.plot(steps, [r["circle"] for r in rows], label="circle", linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("DCR refinement")
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def record_confound(out: Path, cfg: RefineConfig, layer: int, confound: dict[str, Any]) -> None:
    """``results.jsonl`` records of the confound diagnostic (``dcr.refine.confound``), per phase."""
    for phase, scores in confound.items():
        for fields in score_records(scores):
            results.record(out, model=cfg.model, stage="refine", method="dcr", seed=cfg.seed, layer=layer,
                           phase=phase, **fields)


def record_metrics(out: Path, cfg: RefineConfig, layer: int, before: dict, after: dict, sizes: dict) -> None:
    """One flat ``results.jsonl`` record per (eval set, phase, metric)."""
    for name, phases in (("before", before), ("after", after)):
        for eval_set, metrics in phases.items():
            bench, split = ("xstest-vs-hh", "train") if eval_set == "train" else \
                (f"xstest-heldout-vs-{eval_set}", "held-out")
            for metric, value in metrics.items():
                results.record(out, model=cfg.model, stage="refine", method="dcr", seed=cfg.seed, layer=layer,
                               benchmark=bench, split=split, phase=name, metric=metric, value=value,
                               n=sizes[eval_set])


def prepare_trainable(model: Any, cfg: RefineConfig, layer: int) -> tuple[Any, dict[str, Any]]:
    """The model as refine trains it (LoRA adapters, or blocks 0..l trainable with the frozen linears cast;
    activation checkpointing when asked) and a summary of its parameters."""
    info: dict[str, Any] = {}
    if cfg.lora:
        model = setup_lora(model, layer, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.seed)
    else:
        info.update(setup_full(model, layer, cfg.tied_embeddings))
        info["frozen_dtype"] = str(frozen_dtype(cfg)).removeprefix("torch.")
        info["frozen_cast_params"] = cast_frozen_linears(model, frozen_dtype(cfg))
        release_memory()  # the fp32 copies of the cast weights go back to the OS, not to glibc's free lists
    info["params"] = count_params(model)
    if cfg.gradient_checkpointing:
        set_checkpointing(model, True)
    return model, info


def _train_model(model: Any, tok: Any, data: RefineData, cfg: RefineConfig, layer: int,
                 ckpt_dir: Path) -> tuple[Any, list, dict]:
    """Set up the trainable parameters, train, merge LoRA; returns (model, loss rows, info)."""
    prompts, labels = data.train_items()
    autocast = autocast_dtype(cfg.dtype, str(next(model.parameters()).device))
    center = None
    if cfg.center == "base":  # from the base model, before any update (a resumed run computes the same vector)
        center = class_mean_center(model, tok, prompts, labels, layer, cfg.pooling, cfg.template, cfg.max_length,
                                   cfg.eval_batch_size, autocast)
    # the base model's own answers for the anchor term, before any update
    anchor = build_anchor(model, tok, cfg, autocast, ckpt_dir.parent if is_main() else None)
    model, info = prepare_trainable(model, cfg, layer)
    if anchor is not None:
        info["anchor_pairs"] = len(anchor.pairs)
    if center is not None:
        info["center_norm"] = round(float(center.norm()), 4)
    spe = steps_per_epoch(len(prompts), cfg.batch_size)
    batches = make_batches(cfg, data, cfg.epochs * spe)
    torch.manual_seed(cfg.seed)
    stamp = short_hash({"config": dataclasses.asdict(cfg), "layer": layer, "batches": batches})
    rows = train(model, tok, prompts, labels, batches, cfg, layer, spe, autocast, log.info, (ckpt_dir, stamp),
                 center, anchor)
    if cfg.lora:
        model = model.merge_and_unload()
    if cfg.gradient_checkpointing:
        set_checkpointing(model, False)
    model.requires_grad_(False)
    return model, rows, info


def _save_dtype(cfg: RefineConfig) -> torch.dtype:
    return saved_dtype(cfg.save_dtype, autocast_dtype(cfg.dtype, pick_device(cfg.device)) or torch.float32)


def frozen_dtype(cfg: RefineConfig) -> torch.dtype:
    """The dtype of the frozen weights (``RefineConfig.frozen_dtype``)."""
    if cfg.frozen_dtype != "auto":
        return pick_dtype(cfg.frozen_dtype)
    bf16_save = _save_dtype(cfg) == torch.bfloat16
    under_autocast = autocast_dtype(cfg.dtype, pick_device(cfg.device)) == torch.bfloat16
    return torch.bfloat16 if bf16_save and (cfg.lora or under_autocast) else torch.float32


def cast_frozen_linears(model: Any, dtype: torch.dtype) -> int:
    """Cast every ``nn.Linear`` whose parameters are all frozen to ``dtype``; returns how many parameters moved.
    Under autocast of the same dtype this changes no result: autocast rounds fp32 linear weights to it anyway. An
    LM head tied to the input embeddings is left alone (the embeddings keep the residual stream in fp32)."""
    moved = 0
    tied_head = model.get_output_embeddings() if embeddings_tied(model) else None
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if module is tied_head:
            continue
        if isinstance(module, torch.nn.Linear) and params and not any(p.requires_grad for p in params):
            if module.weight.dtype != dtype:
                module.to(dtype)
                moved += sum(p.numel() for p in params)
    return moved


def _load(cfg: RefineConfig) -> tuple[Any, Any, int, bool]:
    """(model, tokenizer, layer, truncated). Truncated (``truncated_load``, forward stopping at l): blocks 0..l
    only. LoRA over a bf16 save keeps the frozen weights in bf16 (the trained adapters stay fp32)."""
    config = model_config(cfg.model)
    layer = check_layer(config, cfg.layer if cfg.layer is not None else default_layer(config))
    attention = training_attention(cfg.device)
    frozen = frozen_dtype(cfg) if cfg.lora else torch.float32
    truncated = cfg.truncated_load and cfg.nll_weight == 0 and cfg.truncate_forward
    if truncated:
        model = load_truncated(resolve_model(cfg.model), layer, attention, frozen).to(pick_device(cfg.device))
        log.info("truncated load: embeddings and blocks 0..%d of %d", layer, num_layers(config))
        return model, load_tokenizer(resolve_model(cfg.model)), layer, True
    model, tok = load_model(cfg.model, dtype="fp32" if frozen == torch.float32 else "bf16", device=cfg.device,
                            attention=attention)
    return own_storage(model), tok, layer, False


def _run_refine(cfg: RefineConfig, out: Path, force: bool = False) -> dict[str, Any]:
    """The body of the stage (``run_stage`` calls it with the output directory)."""
    data = refine_data(cfg)
    if is_main():
        (out / results.RESULTS).unlink(missing_ok=True)
        if force:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        with atomic_open(out / "config.yaml") as fh:
            yaml.safe_dump(dataclasses.asdict(cfg), fh, sort_keys=False)
        write_json(out / "split.json", data.split_json())
    barrier()
    torch.manual_seed(cfg.seed)
    model, tok, layer, truncated = _load(cfg)
    log.info("refine %s at layer %d: %d seemingly, %d toxic", cfg.model, layer, len(data.seemingly), len(data.toxic))
    before = evaluate_sets(model, tok, data, cfg, layer) if is_main() else {}
    sets = confound_sets(data, cfg.data_dir, cfg.xstest_heldout_frac, cfg.split_seed, cfg.confound_n, cfg.seed) \
        if is_main() and cfg.confound_n else None
    confound = {"before": confound_scores(sets, layer_features(model, tok, cfg, layer), cfg.seed)} if sets else {}
    kept = _retention(model, tok, cfg, truncated) if is_main() else None
    model, rows, info = _train_model(model, tok, data, cfg, layer, out / "checkpoints")
    barrier()  # every rank has finished training (the main process wrote the last checkpoint)
    if not is_main():  # several processes: the other ranks' share is done
        return {}
    after = evaluate_sets(model, tok, data, cfg, layer)
    if sets:
        confound["after"] = confound_scores(sets, layer_features(model, tok, cfg, layer), cfg.seed)
    retained = None
    if kept is not None:
        kept_after = _retention(model, tok, cfg, truncated)
        write_generations(out, kept, kept_after)
        retained = verdict(kept, kept_after, cfg)  # raises under retention_action fail: the model is not saved
    if truncated:
        splice_save(model, tok, resolve_model(cfg.model), out / "model", _save_dtype(cfg))
    else:
        save_model(model, tok, out / "model", dtype=_save_dtype(cfg))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the model is saved: the resume state is not needed
    write_table(out / "loss.csv", rows)
    plot_loss(rows, out / "loss.png")
    seconds = rows[-1]["seconds"] if rows else 0.0
    train_info = {**info, "steps": len(rows), "tokens": rows[-1]["tokens"] if rows else 0, "seconds": seconds,
                  "tokens_per_s": round(rows[-1]["tokens"] / seconds, 1) if rows and seconds else None,
                  "final_loss": rows[-1]["loss"] if rows else None, "first_loss": rows[0]["loss"] if rows else None}
    metrics = {"layer": layer, "pooling": cfg.pooling, "n_train": {"seemingly": len(data.seemingly),
               "toxic": len(data.toxic)}, "n_heldout": len(data.heldout), "train": train_info,
               "eval": {k: {"before": before[k], "after": after[k]} for k in before}, "retention": retained,
               **({"confound": confound} if confound else {})}
    write_json(out / "metrics.json", metrics)
    k = min(TRAIN_EVAL, len(data.seemingly), len(data.toxic))
    sizes = {**{name: len(data.heldout) + len(recs) for name, recs in data.eval_toxic.items()}, "train": 2 * k}
    record_metrics(out, cfg, layer, before, after, sizes)
    record_confound(out, cfg, layer, confound)
    if retained is not None:
        for phase in ("before", "after"):
            results.record(out, model=cfg.model, stage="refine", method="dcr", seed=cfg.seed, layer=layer,
                           benchmark="heldout-nll", split="all", phase=phase, metric="nll_per_token",
                           value=retained[f"nll_{phase}"], n=retained["n"])
    return {"layer": layer, "steps": len(rows), "eval": metrics["eval"], "retention": retained}


def _retention(model: Any, tok: Any, cfg: RefineConfig, truncated: bool) -> dict[str, Any] | None:
    """The retention measure of the model as it is (``dcr.refine.retention``); None when off, or when the
    model was loaded without its tail (a forward that stops at l cannot answer)."""
    if cfg.retention_n == 0:
        return None
    if truncated:
        log.info("retention not measured: the truncated load holds no blocks above layer %s", cfg.layer)
        return None
    return measure(model, tok, cfg, autocast_dtype(cfg.dtype, str(next(model.parameters()).device)))


def refine(cfg: RefineConfig, out_dir: str | Path, force: bool = False) -> Path:
    """DCR stage 1: Circle Loss at layer l between seemingly toxic and toxic prompts (tail frozen).

    Skipped when ``out_dir`` holds a finished run with the same key.
    """
    return run_stage("refine", cfg, out_dir, lambda o: _run_refine(cfg, o, force), upstream={"model": cfg.model},
                     force=force, keep=("checkpoints",))[0]
