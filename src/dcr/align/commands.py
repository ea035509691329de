"""``dcr align``: the CLI verb over :func:`dcr.align.align`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from dcr.align.config import AlignConfig
from dcr.align.train import align
from dcr.config import build_config


def align_cmd(
    model: str = typer.Option(None, "--model", help="Model: embedded name, HF dir, dcr stage dir (refine OUT)."),
    out: Path = typer.Option(..., "--out", help="Output dir (adapter/, model/, train_log.csv, tracking.csv)."),
    method: str = typer.Option(None, "--method", help="stl or stl-aug (adds in-distribution XSTest safe)."),
    config: Path = typer.Option(None, "--config", help="YAML file with AlignConfig fields (section 'align' ok)."),
    limit: int = typer.Option(None, "--limit", help="Cap on total training pairs (parts scaled proportionally)."),
    epochs: float = typer.Option(None, "--epochs", help="Training epochs (default 3)."),
    n_general: int = typer.Option(None, "--n-general", help="General instruction pairs (default 20000)."),
    n_safety: int = typer.Option(None, "--n-safety", help="Toxic prompts with safe responses (default 1000)."),
    teacher: str = typer.Option(None, "--teacher", help="Model answering the general prompts ('self' = --model)."),
    exclude_from: str = typer.Option(None, "--exclude-from", help="refine OUT whose toxic prompts are excluded."),
    micro_batch: int = typer.Option(None, "--micro-batch", help="Per-device micro-batch (default 4)."),
    grad_accum: int = typer.Option(None, "--grad-accum", help="Gradient accumulation steps (default 32)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default 1e-4)."),
    data_dir: str = typer.Option(None, "--data-dir", help="Offline data directory (else $DCR_DATA_DIR)."),
    seed: int = typer.Option(None, "--seed", help="Seed."),
    dtype: str = typer.Option(None, "--dtype", help="auto, bf16 (autocast over fp32 weights) or fp32."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda."),
    sets: list[str] = typer.Option(None, "--set", help="Override any AlignConfig field: --set track_every=5."),
    force: bool = typer.Option(False, "--force", help="Re-run from scratch even if OUT holds a finished run."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
) -> None:
    """STL / STL-aug safety alignment: LoRA SFT on general + refusal pairs, tracking refusal as it trains."""
    overrides = dict(model=model, method=method, limit=limit, epochs=epochs, n_general=n_general,
                     n_safety=n_safety, teacher=teacher, exclude_from=exclude_from, micro_batch=micro_batch,
                     grad_accum=grad_accum, lr=lr, data_dir=data_dir, seed=seed, dtype=dtype, device=device)
    cfg = build_config(AlignConfig, config, overrides, sets, section="align")
    logger = logging.getLogger("dcr.align")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not quiet:
        logger.addHandler(handler)
    try:
        path = align(cfg, out, force=force)
    finally:
        logger.removeHandler(handler)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("align")(align_cmd)
