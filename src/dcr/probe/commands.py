"""``dcr probe ntk | ntk-track | separability | mds``: the CLI verbs over the :mod:`dcr.probe` stages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from dcr.config import build_config
from dcr.probe.config import MdsConfig, NtkConfig, NtkTrackConfig, SeparabilityConfig
from dcr.probe.stages import mds, ntk, ntk_track, separability

probe_app = typer.Typer(help="Analysis: eNTK similarity (A.6), layer separability and MDS maps (A.9).",
                        no_args_is_help=True)

MODEL = typer.Option(None, "--model", help="Model: embedded name (smollm2-135m), HF dir, dcr stage dir, hub id.")
OUT = typer.Option(..., "--out", help="Output directory (figures, metrics.json, results.jsonl).")
CONFIG = typer.Option(None, "--config", help="YAML file with the config fields (section 'probe' ok).")
DATA = typer.Option(None, "--data-dir", help="Offline data directory (else $DCR_DATA_DIR).")
SETS = typer.Option(None, "--set", help="Override any config field: --set top_k=3.")
SEED = typer.Option(None, "--seed", help="Seed.")
DTYPE = typer.Option(None, "--dtype", help="auto, fp32, bf16.")
DEVICE = typer.Option(None, "--device", help="auto, cpu, cuda.")
FORCE = typer.Option(False, "--force", help="Re-run even if OUT holds a finished run of this config.")
QUIET = typer.Option(False, "--quiet", help="No progress lines.")


@contextmanager
def _progress(name: str, quiet: bool) -> Iterator[None]:
    logger = logging.getLogger(f"dcr.{name}")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not quiet:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _layer_list(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    from dcr.errors import ConfigError

    try:
        return [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--layers {raw!r}: expected comma-separated block indices, e.g. 4,8,12") from None


def _run(stage: Callable[..., Path], name: str, cls: type, config: Path | None, overrides: dict[str, Any],
         sets: list[str] | None, out: Path, force: bool, quiet: bool) -> None:
    cfg = build_config(cls, config, overrides, sets, section="probe")
    with _progress(name, quiet):
        path = stage(cfg, out, force=force)
    typer.echo(str(path))


@probe_app.command("ntk")
def ntk_cmd(
    model: str = MODEL, out: Path = OUT, config: Path = CONFIG, data_dir: str = DATA, sets: list[str] = SETS,
    model_after: str = typer.Option(None, "--model-after", help="Second model (e.g. after DCR), side by side."),
    n: int = typer.Option(None, "--n", help="Prompts per group (default 25)."),
    layers: int = typer.Option(None, "--layers", help="Parameter subset: last N decoder layers (default 2)."),
    top_k: int = typer.Option(None, "--top-k", help="Top-k token set size (default 5)."),
    method: str = typer.Option(None, "--method", help="fd (finite differences, A.6) or jvp (exact)."),
    seed: int = SEED, dtype: str = DTYPE, device: str = DEVICE, force: bool = FORCE, quiet: bool = QUIET,
) -> None:
    """Mean normalised ||K_t(x', x)||_F between S-toxic, toxic and normal prompts (Fig. 6)."""
    overrides = dict(model=model, model_after=model_after, n_per_group=n, ntk_layers=layers, top_k=top_k,
                     method=method, data_dir=data_dir, seed=seed, dtype=dtype, device=device)
    _run(ntk, "probe-ntk", NtkConfig, config, overrides, sets, out, force, quiet)


@probe_app.command("ntk-track")
def ntk_track_cmd(
    out: Path = OUT,
    checkpoints: list[str] = typer.Option(None, "--checkpoints", help="Checkpoint dirs (HF or PEFT adapter) or "
                                          "a dir of checkpoint subdirs; more dirs may follow as arguments."),
    more: list[str] = typer.Argument(None, help="More checkpoint dirs (so --checkpoints D1 D2 D3 works)."),
    model: str = typer.Option(None, "--model", help="Base model of PEFT adapter checkpoints (optional)."),
    config: Path = CONFIG, data_dir: str = DATA, sets: list[str] = SETS,
    n: int = typer.Option(None, "--n", help="Prompts per group (default 25)."),
    layers: int = typer.Option(None, "--layers", help="Parameter subset: last N decoder layers (default 2)."),
    top_k: int = typer.Option(None, "--top-k", help="Top-k token set size (default 5)."),
    method: str = typer.Option(None, "--method", help="fd or jvp."),
    seed: int = SEED, dtype: str = DTYPE, device: str = DEVICE, force: bool = FORCE, quiet: bool = QUIET,
) -> None:
    """Group-pair means of ||K_t|| across alignment checkpoints (Fig. 3)."""
    dirs = [*(checkpoints or []), *(more or [])] or None
    overrides = dict(checkpoints=dirs, base_model=model, n_per_group=n, ntk_layers=layers, top_k=top_k,
                     method=method, data_dir=data_dir, seed=seed, dtype=dtype, device=device)
    _run(ntk_track, "probe-ntk-track", NtkTrackConfig, config, overrides, sets, out, force, quiet)


@probe_app.command("separability")
def separability_cmd(
    model: str = MODEL, out: Path = OUT, config: Path = CONFIG, data_dir: str = DATA, sets: list[str] = SETS,
    n: int = typer.Option(None, "--n", help="Prompts per set (default: all)."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated 0-based blocks (default: all)."),
    set_a: str = typer.Option(None, "--set-a", help="First prompt set (default xstest-safe)."),
    set_b: str = typer.Option(None, "--set-b", help="Second prompt set (default xstest-unsafe)."),
    seed: int = SEED, dtype: str = DTYPE, device: str = DEVICE, force: bool = FORCE, quiet: bool = QUIET,
) -> None:
    """Per-layer k-means and linear-probe accuracy (Fig. 7) and a suggested DCR layer."""
    overrides = dict(model=model, n=n, layers=_layer_list(layers), set_a=set_a, set_b=set_b, data_dir=data_dir,
                     seed=seed, dtype=dtype, device=device)
    _run(separability, "probe-separability", SeparabilityConfig, config, overrides, sets, out, force, quiet)


@probe_app.command("mds")
def mds_cmd(
    model: str = MODEL, out: Path = OUT, config: Path = CONFIG, data_dir: str = DATA, sets: list[str] = SETS,
    n: int = typer.Option(None, "--n", help="Prompts per set (default: all)."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated 0-based blocks (default: 6 spaced)."),
    method: str = typer.Option(None, "--method", help="smacof (sklearn MDS) or classical (Torgerson)."),
    seed: int = SEED, dtype: str = DTYPE, device: str = DEVICE, force: bool = FORCE, quiet: bool = QUIET,
) -> None:
    """2-D MDS maps of last-token activations at chosen layers (Fig. 8)."""
    overrides = dict(model=model, n=n, layers=_layer_list(layers), mds_method=method, data_dir=data_dir,
                     seed=seed, dtype=dtype, device=device)
    _run(mds, "probe-mds", MdsConfig, config, overrides, sets, out, force, quiet)


def register(app: typer.Typer) -> None:
    app.add_typer(probe_app, name="probe")
