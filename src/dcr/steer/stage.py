"""``steer(cfg, out_dir)``: fit Surgical or SCANS on a model; write the steering artifact (and a baked export).

Outputs in ``OUT``: ``steer.json`` (method, parameters, data ids, fit info), ``directions.safetensors``,
``model/`` (Surgical with ``export: true``: the ablation baked into the weights), plus ``manifest.json`` and
``stage.log`` from run_stage.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from dcr.models import load_model, save_model
from dcr.stage import run_stage
from dcr.steer.artifact import save_steerer
from dcr.steer.config import SteerConfig
from dcr.steer.directions import load_sets
from dcr.steer.fit import fit_scans, fit_surgical
from dcr.steer.surgical import SurgicalSteerer, bake


def _export(model: Any, tok: Any, steerer: SurgicalSteerer, out: Path) -> dict[str, Any]:
    """Bake the ablation (and the addition where a bias allows) into the weights; write OUT/model/."""
    baked = bake(model, steerer)
    add = "baked into a bias" if baked["addition"] else (
        f"NOT baked (no bias in the last residual writer of block {steerer.layer}); apply it with the hooks")
    note = (f"Surgical export: ablation of the false-refusal direction with weight {steerer.w_f} baked into "
            f"{len(baked['writers'])} residual writers and the embedding; +{steerer.w_h} r_h at block "
            f"{steerer.layer}: {add if steerer.w_h > 0 else 'not used (w_h = 0)'}.\n")
    save_model(model, tok, out / "model", notes={"DCR_STEER.txt": note})
    return baked


def _run_steer(cfg: SteerConfig, out: Path) -> dict[str, Any]:
    """The body of the stage: extraction sets, fit, artifact (and export)."""
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


def steer(cfg: SteerConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Fit Surgical or SCANS activation steering; use it with `dcr evaluate --steer OUT`.

    Skipped when ``out_dir`` holds a finished run with the same key.
    """
    return run_stage("steer", cfg, out_dir, lambda o: _run_steer(cfg, o), upstream={"model": cfg.model},
                     force=force)[0]
