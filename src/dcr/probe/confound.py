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

import yaml

from dcr.errors import ConfigError
from dcr.io import read_json, write_json
from dcr.models import load_model
from dcr.probe.config import ConfoundConfig
from dcr.refine.config import RefineConfig
from dcr.refine.confound import confound_scores, confound_sets
from dcr.refine.data import refine_data
from dcr.results import record
from dcr.stage import run_stage


def refine_setup(cfg: ConfoundConfig) -> tuple[RefineConfig, dict[str, Any]]:
    """(the refine stage's config with this probe's model, dtype, device and seed; its metrics.json)."""
    stage = Path(cfg.refine_stage)
    files = {name: stage / name for name in ("config.yaml", "metrics.json")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"refine_stage {stage} is not a finished refine stage (no {', '.join(missing)}). Fix: "
                          "pass the directory of a refine stage that finished (RUN/stages/refine-ID)")
    raw = yaml.safe_load(files["config.yaml"].read_text(encoding="utf-8"))
    metrics = read_json(files["metrics.json"])
    if not isinstance(raw, dict) or "layer" not in metrics:
        raise ConfigError(f"{files['config.yaml']}: not a refine stage's config (or metrics.json has no layer). "
                          "Fix: pass a refine stage directory")
    known = {f.name for f in dataclasses.fields(RefineConfig)}
    values = {k: v for k, v in raw.items() if k in known}
    values.update(model=cfg.model, dtype=cfg.dtype, device=cfg.device,
                  data_dir=cfg.data_dir if cfg.data_dir is not None else values.get("data_dir"))
    if cfg.seed is not None:
        values["seed"] = cfg.seed
    return RefineConfig(**values), metrics


def _run_confound(cfg: ConfoundConfig, out: Path) -> dict[str, Any]:
    """The body of ``confound``."""
    from dcr.refine.stage import layer_features

    rcfg, metrics = refine_setup(cfg)
    layer = int(metrics["layer"])
    sets = confound_sets(refine_data(rcfg), rcfg.data_dir, rcfg.xstest_heldout_frac, rcfg.split_seed,
                         rcfg.confound_n or 50, rcfg.seed)
    model, tok = load_model(cfg.model, dtype="fp32", device=cfg.device)
    scores = confound_scores(sets, layer_features(model, tok, rcfg, layer), rcfg.seed)
    for metric, groups in scores.items():
        for group, row in groups.items():
            if row.get("probe_accuracy") is not None:
                record(out, stage="probe-confound", model=cfg.model, seed=rcfg.seed, layer=layer,
                       benchmark=f"confound-{group}", split="never-trained", metric=f"probe_{metric}",
                       value=row["probe_accuracy"], n=sum(row["n"]), chance=row["chance"])
    summary = {"model": cfg.model, "refine_stage": cfg.refine_stage, "layer": layer, "seed": rcfg.seed,
               "confound": scores, "refine_stage_confound": metrics.get("confound")}
    write_json(out / "metrics.json", {"config": asdict(cfg), **summary})
    return {"layer": layer, "confound": scores}


def confound(cfg: ConfoundConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Probe accuracy on class within a source and on source within a class, at a refine stage's layer and on its
    prompts (the refine stage's confound diagnostic), for any model."""
    return run_stage("probe-confound", cfg, out_dir, lambda o: _run_confound(cfg, o),
                     upstream={"model": cfg.model, "refine_stage": cfg.refine_stage}, force=force)[0]
