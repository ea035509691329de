"""``dcr refine``: the CLI verb over :func:`dcr.refine.refine`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from dcr.config import build_config
from dcr.refine.config import RefineConfig
from dcr.refine.stage import refine


def refine_cmd(
    model: str = typer.Option(None, "--model", help="Model: embedded name, HF dir, dcr stage dir or hub id."),
    out: Path = typer.Option(..., "--out", help="Output directory (model/, metrics.json, loss.csv, ...)."),
    config: Path = typer.Option(None, "--config", help="YAML file with RefineConfig fields (section 'refine' ok)."),
    layer: int = typer.Option(None, "--layer", help="Target layer l (0-based block index); default layers // 2."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs (default 3)."),
    limit: int = typer.Option(None, "--limit", help="Cap on training prompts per class."),
    lora: bool = typer.Option(None, "--lora/--full", help="LoRA on layers <= l, or full-parameter (default)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Prompts per batch (default 32)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 1e-4)."),
    pooling: str = typer.Option(None, "--pooling", help="last or mean."),
    data_dir: str = typer.Option(None, "--data-dir", help="Offline data directory (else $DCR_DATA_DIR)."),
    seed: int = typer.Option(None, "--seed", help="Seed."),
    dtype: str = typer.Option(None, "--dtype", help="auto, bf16 (autocast over fp32 weights) or fp32."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda."),
    sets: list[str] = typer.Option(None, "--set", help="Override any RefineConfig field: --set margin=0.3."),
    force: bool = typer.Option(False, "--force", help="Re-run even if OUT holds a finished run of this config."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-step progress lines."),
) -> None:
    """DCR stage 1: Circle Loss at layer l between seemingly toxic and toxic prompts (tail frozen)."""
    overrides = dict(model=model, layer=layer, epochs=epochs, limit=limit, lora=lora, batch_size=batch_size,
                     lr=lr, pooling=pooling, data_dir=data_dir, seed=seed, dtype=dtype, device=device)
    cfg = build_config(RefineConfig, config, overrides, sets, section="refine")
    logger = logging.getLogger("dcr.refine")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not quiet:
        logger.addHandler(handler)
    try:
        path = refine(cfg, out, force=force)
    finally:
        logger.removeHandler(handler)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("refine")(refine_cmd)
