"""``dcr probe confound``: the refine stage's confound diagnostic (:mod:`dcr.refine.confound`) on any model.

A refine stage measures, before and after training, how well a linear probe at its layer reads a prompt's class
within one source (harm) and its source within one class (data set). Whether STL then undoes what refinement did
needs the same probe on the STL and DCR + STL models: this stage rebuilds the refine stage's configuration from
its ``config.yaml`` (same data, training prompts left out, same seed, layer, pooling, template and length),
swaps in the model to score, and writes the same two groups of accuracies beside the refine stage's own
before/after. Scoring the refine stage's input model gives its "before" numbers again, its output model its
"after" ones (``tests/probe/test_confound.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from dcr.config import _NO_LEGACY
from dcr.errors import ConfigError
from dcr.io import read_json, write_json
from dcr.models import load_model
from dcr.probe.config import ConfoundConfig
from dcr.refine.config import RefineConfig
from dcr.refine.confound import confound_scores, confound_sets, score_records
from dcr.refine.data import refine_data
from dcr.results import record
from dcr.stage import run_stage

DEFAULT_N = 50  # prompts per side when the refine stage ran without the diagnostic (confound_n 0)


def _read_stage(stage: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.yaml, metrics.json) of a finished refine stage, or a one-line ConfigError naming what is wrong."""
    files = {name: stage / name for name in ("config.yaml", "metrics.json")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"refine_stage {stage} is not a finished refine stage (no {', '.join(missing)}). Fix: "
                          "pass the directory of a refine stage that finished (RUN/stages/refine-ID)")
    try:
        raw = yaml.safe_load(files["config.yaml"].read_text(encoding="utf-8"))
        metrics = read_json(files["metrics.json"])
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"refine_stage {stage}: config.yaml or metrics.json does not parse "
                          f"({type(exc).__name__}). Fix: pass an intact refine stage directory") from None
    if not isinstance(raw, dict) or not isinstance(metrics, dict) or "layer" not in metrics:
        raise ConfigError(f"refine_stage {stage}: not a refine stage's config.yaml and metrics.json (with its "
                          "layer). Fix: pass a refine stage directory")
    return raw, metrics


def refine_setup(cfg: ConfoundConfig) -> tuple[RefineConfig, dict[str, Any]]:
    """(the refine stage's own config, with this probe's model, device and data directory; its metrics.json).

    The seed stays the refine stage's, so its data (and the training prompts the probe leaves out) are those it
    trained on; ``cfg.seed`` only redraws the probe's samples and folds (:func:`probe_seed`). dtype ``auto``
    keeps the refine stage's dtype. A field the stage's config.yaml predates takes its ``legacy`` value
    (``dcr.config.field``), the behaviour from before it existed, else its default."""
    raw, metrics = _read_stage(Path(cfg.refine_stage))
    values = {}
    for f in dataclasses.fields(RefineConfig):
        if f.name in raw:
            values[f.name] = raw[f.name]
        elif f.metadata.get("legacy", _NO_LEGACY) is not _NO_LEGACY:
            values[f.name] = f.metadata["legacy"]
    values.update(model=cfg.model, device=cfg.device, data_dir=cfg.data_dir)  # one data directory: checked = read
    if cfg.dtype != "auto":
        values["dtype"] = cfg.dtype
    return RefineConfig(**values), metrics


def probe_seed(cfg: ConfoundConfig, rcfg: RefineConfig) -> int:
    """The seed of the probe's prompt samples and folds: ``cfg.seed``, else the refine stage's."""
    return rcfg.seed if cfg.seed is None else cfg.seed


def _load_dtype(rcfg: RefineConfig) -> str:
    """The weights' dtype as the refine stage loaded them (fp32; bf16 frozen weights under LoRA when it kept them)."""
    from dcr.refine.stage import frozen_dtype

    return "bf16" if rcfg.lora and frozen_dtype(rcfg) == torch.bfloat16 else "fp32"


def _run_confound(cfg: ConfoundConfig, out: Path) -> dict[str, Any]:
    """The body of ``confound``."""
    from dcr.refine.stage import autocast_dtype, layer_features

    rcfg, metrics = refine_setup(cfg)
    layer, seed, n = int(metrics["layer"]), probe_seed(cfg, rcfg), rcfg.confound_n or DEFAULT_N
    sets = confound_sets(refine_data(rcfg), rcfg.data_dir, rcfg.xstest_heldout_frac, rcfg.split_seed, n, seed)
    weights = _load_dtype(rcfg)
    model, tok = load_model(cfg.model, dtype=weights, device=cfg.device)
    scores = confound_scores(sets, layer_features(model, tok, rcfg, layer), seed)
    for fields in score_records(scores):
        record(out, stage="probe-confound", model=cfg.model, seed=seed, layer=layer, **fields)
    autocast = autocast_dtype(rcfg.dtype, str(next(model.parameters()).device))
    summary = {"model": cfg.model, "refine_stage": cfg.refine_stage, "layer": layer, "seed": seed,
               "refine_seed": rcfg.seed, "confound_n": n, "weights_dtype": weights,
               "autocast_dtype": str(autocast).removeprefix("torch.") if autocast else None,
               "confound": scores, "refine_stage_confound": metrics.get("confound")}
    write_json(out / "metrics.json", {"config": asdict(cfg), **summary})
    return {"layer": layer, "confound": scores}


def confound(cfg: ConfoundConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Probe accuracy on class within a source and on source within a class, at a refine stage's layer and on its
    prompts (the refine stage's confound diagnostic), for any model."""
    return run_stage("probe-confound", cfg, out_dir, lambda o: _run_confound(cfg, o),
                     upstream={"model": cfg.model, "refine_stage": cfg.refine_stage}, force=force)[0]
