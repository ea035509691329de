"""``dcr steer surgical|scans``: extract steering directions, save the artifact, optionally bake an export."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from dcr.config import build_config
from dcr.io import read_json
from dcr.models import load_model, resolve_model
from dcr.stage import run_stage
from dcr.steer.artifact import save_steerer, write_note
from dcr.steer.config import METHODS, SteerConfig
from dcr.steer.directions import load_sets
from dcr.steer.fit import fit_scans, fit_surgical
from dcr.steer.surgical import SurgicalSteerer, bake


def _model_inputs(name: str) -> dict[str, Any]:
    """What identifies the steered model for the stage key: its resolved path and its stage key, if any."""
    ref = resolve_model(name)
    out: dict[str, Any] = {"model": ref}
    for manifest in (Path(ref) / "manifest.json", Path(ref).parent / "manifest.json"):
        if manifest.exists():
            try:
                out["model_stage_key"] = read_json(manifest).get("key")
            except ValueError:
                pass
            break
    return out


def _export(model: Any, tok: Any, steerer: SurgicalSteerer, out: Path) -> dict[str, Any]:
    """Bake the ablation (and the addition where a bias allows) into the weights; write OUT/model/."""
    baked = bake(model, steerer)
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    add = "baked into a bias" if baked["addition"] else (
        f"NOT baked (no bias in the last residual writer of block {steerer.layer}); apply it with the hooks")
    write_note(tmp / "DCR_STEER.txt",
               f"Surgical export: ablation of the false-refusal direction with weight {steerer.w_f} baked into "
               f"{len(baked['writers'])} residual writers and the embedding; +{steerer.w_h} r_h at block "
               f"{steerer.layer}: {add if steerer.w_h > 0 else 'not used (w_h = 0)'}.\n")
    shutil.rmtree(out / "model", ignore_errors=True)
    tmp.replace(out / "model")
    return baked


def steer(cfg: SteerConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Fit the ``cfg.method`` steerer on ``cfg.model``; write steer.json, directions.safetensors (and model/)."""

    def run(out: Path) -> dict[str, Any]:
        model, tok = load_model(cfg.model, cfg.dtype, cfg.device)
        sets = load_sets(cfg, with_seemingly=True)
        fit = fit_surgical if cfg.method == "surgical" else fit_scans
        steerer, res = fit(model, tok, cfg, sets)
        meta: dict[str, Any] = {
            "model": cfg.model,
            "hidden_size": int(model.get_input_embeddings().weight.shape[-1]),
            "fit": res["info"],
            "data_ids": {k: s.ids for k, s in sets.items()},
            "data_sources": {"harmful": cfg.harmful_source, "harmless": "alpaca",
                             "seemingly_toxic": f"xstest-safe in-distribution (heldout_frac="
                                                f"{cfg.xstest_heldout_frac}, split_seed={cfg.split_seed})"},
            "config": asdict(cfg),
            "export": None,
        }
        if cfg.export and isinstance(steerer, SurgicalSteerer):
            meta["export"] = _export(model, tok, steerer, out)
        save_steerer(out, steerer, meta, res["tensors"])
        return {"method": cfg.method, **{k: v for k, v in res["info"].items() if not isinstance(v, dict)}}

    out, _skipped = run_stage("steer", cfg, out_dir, run, inputs=_model_inputs(cfg.model), force=force)
    return out


def steer_cmd(
    method: str = typer.Argument(..., help=f"Steering method: {' | '.join(METHODS)}."),
    model: str = typer.Option(None, "--model", help="Model: embedded name, HF dir, dcr stage dir, or hub id."),
    out: Path = typer.Option(..., "--out", help="Output directory (steer.json, directions.safetensors)."),
    config: Path = typer.Option(None, "--config", help="YAML config (a `steer:` section or top-level fields)."),
    data_dir: str = typer.Option(None, "--data-dir", help="Offline data directory (else $DCR_DATA_DIR)."),
    layer: str = typer.Option(None, "--layer", help="Surgical: block index; SCANS: steered blocks, e.g. 9,10,11."),
    n: int = typer.Option(None, "--n", help="Prompts per extraction set (n_directions)."),
    sets: list[str] = typer.Option(None, "--set", help="Override any field: --set w_f=0.3 (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Re-run even if OUT holds a finished run of the same config."),
) -> None:
    """Fit Surgical or SCANS activation steering; use it with `dcr evaluate --steer OUT`."""
    overrides: dict[str, Any] = {"method": method, "model": model, "data_dir": data_dir, "n_directions": n}
    overrides["layer" if method == "surgical" else "layers"] = layer
    cfg = build_config(SteerConfig, config, overrides, sets, section="steer")
    path = steer(cfg, out, force=force)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("steer")(steer_cmd)
