"""The probe stages ``ntk``, ``ntk_track``, ``separability`` and ``mds``.

Each wraps ``run_stage`` around its body ``_run_<stage>(cfg, out)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dcr.config import config_hash
from dcr.data import load_benchmark
from dcr.errors import ConfigError
from dcr.io import read_json, write_json, write_table
from dcr.models import load_model, num_layers
from dcr.probe.config import MdsConfig, NtkConfig, NtkTrackConfig, SeparabilityConfig
from dcr.probe.groups import confound_ratio, model_group_matrix, pair_means, plot_matrices, plot_tracking
from dcr.probe.inputs import expand_checkpoints, load_checkpoint, load_groups
from dcr.probe.mds import default_layers, embed, plot_grid
from dcr.probe.separability import last_token_states, layer_scores, plot_scores, suggest_layer
from dcr.results import record
from dcr.stage import run_stage


def _log(name: str) -> Callable[[str], None]:
    """``logger.info`` of the stage logger ``dcr.<name>`` (its file handler writes OUT/stage.log)."""
    return logging.getLogger(f"dcr.{name}").info


def _ntk_dtype(cfg: NtkConfig) -> str:
    return "fp32" if cfg.dtype == "auto" else cfg.dtype


def _record_matrix(out: Path, result: dict[str, Any], model: str, role: str, cfg: NtkConfig, **extra: Any) -> None:
    order, mat = result["order"], result["matrix"]
    n = len(result["groups"])
    for r, row_group in enumerate(order):
        for c, col_group in enumerate(order):
            record(out, stage="probe-ntk", model=model, role=role, metric="ntk_norm", x_prime_group=row_group,
                   x_group=col_group, value=mat[r][c], n=n, method=cfg.method, top_k=cfg.top_k,
                   ntk_layers=cfg.ntk_layers, **extra)


def _run_ntk(cfg: NtkConfig, out: Path) -> dict[str, Any]:
    """The body of ``ntk``."""
    log = _log("probe-ntk")
    records = load_groups(cfg.n_per_group, cfg.seed, cfg.data_dir)
    results: dict[str, Any] = {}
    for role, ref in (("before", cfg.model), ("after", cfg.model_after)):
        if ref is None:
            continue
        start = time.time()
        model, tok = load_model(ref, dtype=_ntk_dtype(cfg), device=cfg.device)
        results[role] = {"model": ref, **model_group_matrix(model, tok, records, cfg, log),
                         "seconds": round(time.time() - start, 1)}
        _record_matrix(out, results[role], ref, role, cfg)
        del model
    order = results["before"]["order"]
    titles = [f"{role}: {Path(results[role]['model']).name}" for role in results]
    plot_matrices([np.asarray(r["matrix"]) for r in results.values()], titles, order, out / "ntk.png")
    summary = {role: {"model": r["model"], "order": order, "matrix": r["matrix"], "seconds": r["seconds"],
                      "subset_parameters": r["subset_parameters"],
                      "ratio_stoxic_toxic": confound_ratio(np.asarray(r["matrix"]), order)}
               for role, r in results.items()}
    for role, r in summary.items():
        record(out, stage="probe-ntk", model=r["model"], role=role, metric="ntk_ratio_stoxic_toxic",
               value=r["ratio_stoxic_toxic"], n=len(results[role]["groups"]), method=cfg.method)
    write_json(out / "metrics.json", {"config": asdict(cfg), **summary})
    write_json(out / "ntk_norms.json", results)
    return {role: r["matrix"] for role, r in summary.items()}


def ntk(cfg: NtkConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Group matrix of the mean normalised eNTK similarity (Fig. 6); two models side by side with model_after."""
    return run_stage("probe-ntk", cfg, out_dir, lambda o: _run_ntk(cfg, o),
                     upstream={"model": cfg.model, "model_after": cfg.model_after}, force=force)[0]


def _track_one(path: Path, cfg: NtkTrackConfig, records: dict[str, Any], cache: Path,
               log: Callable[[str], None]) -> dict[str, Any]:
    """One checkpoint's group matrix, reused from ``cache`` when computed before with the same settings."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("checkpoints", "model", "model_after")}
    key = config_hash(settings, {"checkpoint": str(path.resolve())})
    if cache.exists() and read_json(cache).get("key") == key:
        return read_json(cache)
    log(f"checkpoint {path}")
    model, tok = load_checkpoint(path, cfg.base_model, _ntk_dtype(cfg), cfg.device)
    result = {"key": key, "checkpoint": str(path), **model_group_matrix(model, tok, records, cfg, log)}
    write_json(cache, result)
    return result


def _run_ntk_track(cfg: NtkTrackConfig, out: Path) -> dict[str, Any]:
    """The body of ``ntk_track``."""
    log = _log("probe-ntk-track")
    records = load_groups(cfg.n_per_group, cfg.seed, cfg.data_dir)
    paths = expand_checkpoints(cfg.checkpoints)
    rows, pairs, names = [], [], []
    for i, path in enumerate(paths):
        res = _track_one(path, cfg, records, out / "per_checkpoint" / f"{i:03d}.json", log)
        pm = pair_means(np.asarray(res["matrix"]), res["order"])
        names.append(path.name)
        pairs.append(pm)
        rows.extend({"checkpoint": path.name, "index": i, "pair": k, "value": v} for k, v in pm.items())
        for k, v in pm.items():
            record(out, stage="probe-ntk-track", model=str(path), checkpoint=path.name, index=i,
                   metric="ntk_norm_pair", pair=k, value=v, n=len(res["groups"]), method=cfg.method)
    write_table(out / "tracking.csv", rows)
    plot_tracking(names, pairs, out / "ntk_track.png")
    write_json(out / "metrics.json", {"config": asdict(cfg), "checkpoints": [str(p) for p in paths],
                                      "pairs": pairs})
    return {"checkpoints": len(paths)}


def ntk_track(cfg: NtkTrackConfig, out_dir: str | Path, force: bool = False) -> Path:
    """The group-pair means of ||K_t|| across alignment checkpoints (Fig. 3); resumes per checkpoint."""
    return run_stage("probe-ntk-track", cfg, out_dir, lambda o: _run_ntk_track(cfg, o),
                     upstream={"base_model": cfg.base_model, **{f"checkpoint-{i}": c for i, c in
                                                                enumerate(cfg.checkpoints)}},
                     force=force, keep=("per_checkpoint",))[0]


def _features(cfg: SeparabilityConfig | MdsConfig, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, int]:
    """Last-token states ``[L, N, d]``, labels ``[N]`` (0 = set_a, 1 = set_b) and the number of layers."""
    a = load_benchmark(cfg.set_a, cfg.data_dir, limit=cfg.n, seed=cfg.seed)
    b = load_benchmark(cfg.set_b, cfg.data_dir, limit=cfg.n, seed=cfg.seed)
    need = cfg.min_per_set
    small = {name: len(recs) for name, recs in ((cfg.set_a, a), (cfg.set_b, b)) if len(recs) < need}
    if small:
        raise ConfigError(f"prompt sets {small} are too small: each needs at least {need} prompts (both classes in "
                          "every cross-validation fold). Fix: use larger sets, or --set cv_folds=N with fewer folds")
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    log(f"features: {len(a)} {cfg.set_a} + {len(b)} {cfg.set_b} prompts, {num_layers(model)} layers")
    states = last_token_states(model, tok, [r.prompt for r in a + b], cfg.template, cfg.max_length,
                               cfg.batch_size)
    labels = np.array([0] * len(a) + [1] * len(b))
    return states, labels, num_layers(model)


def _check_layers(layers: list[int], n_layers: int) -> list[int]:
    bad = [layer for layer in layers if layer >= n_layers]
    if bad:
        raise ConfigError(f"layers {bad} out of range: the model has blocks 0..{n_layers - 1}. Fix: --layers")
    return layers


def _run_separability(cfg: SeparabilityConfig, out: Path) -> dict[str, Any]:
    """The body of ``separability``."""
    log = _log("probe-separability")
    states, labels, n_layers = _features(cfg, log)
    layers = _check_layers(cfg.layers or list(range(n_layers)), n_layers)
    scores = layer_scores(states, labels, layers, cfg.seed, cfg.cv_folds, cfg.kmeans_init)
    suggestion = suggest_layer(scores, n_layers, (cfg.middle_band[0], cfg.middle_band[1]), cfg.saturation_tol)
    log(f"suggested layer {suggestion['layer']}: {suggestion['reason']}")
    write_table(out / "separability.csv", scores)
    plot_scores(scores, suggestion["layer"], f"{Path(cfg.model).name}: {cfg.set_a} vs {cfg.set_b}",
                out / "separability.png")
    for s in scores:
        for metric in ("kmeans_acc", "probe_acc"):
            record(out, stage="probe-separability", model=cfg.model, metric=metric, layer=s["layer"],
                   value=s[metric], n=len(labels), set_a=cfg.set_a, set_b=cfg.set_b)
    record(out, stage="probe-separability", model=cfg.model, metric="suggested_layer",
           value=suggestion["layer"], n=len(labels), set_a=cfg.set_a, set_b=cfg.set_b)
    summary = {"n_layers": n_layers, "n": len(labels), "suggested": suggestion,
               "max_kmeans_acc": max(s["kmeans_acc"] for s in scores),
               "max_probe_acc": max(s["probe_acc"] for s in scores)}
    write_json(out / "metrics.json", {"config": asdict(cfg), **summary, "layers": scores})
    return summary


def separability(cfg: SeparabilityConfig, out_dir: str | Path, force: bool = False) -> Path:
    """Per-layer k-means / linear-probe accuracy (Fig. 7) and a suggested DCR layer."""
    return run_stage("probe-separability", cfg, out_dir, lambda o: _run_separability(cfg, o),
                     upstream={"model": cfg.model}, force=force)[0]


def _run_mds(cfg: MdsConfig, out: Path) -> dict[str, Any]:
    """The body of ``mds``."""
    log = _log("probe-mds")
    states, labels, n_layers = _features(cfg, log)
    layers = _check_layers(cfg.layers or default_layers(n_layers), n_layers)
    coords = {layer: embed(states[layer], cfg.mds_method, cfg.seed) for layer in layers}
    plot_grid(coords, labels, (cfg.set_a, cfg.set_b), f"{Path(cfg.model).name}: MDS of last-token states",
              out / "mds.png")
    rows = [{"layer": layer, "index": i, "label": int(labels[i]), "x": float(xy[i, 0]), "y": float(xy[i, 1])}
            for layer, xy in coords.items() for i in range(len(labels))]
    write_table(out / "mds_coords.csv", rows)
    write_json(out / "metrics.json", {"config": asdict(cfg), "layers": layers, "n": len(labels),
                                      "n_layers": n_layers})
    record(out, stage="probe-mds", model=cfg.model, metric="mds_layers", value=len(layers), n=len(labels))
    return {"layers": layers, "n": len(labels)}


def mds(cfg: MdsConfig, out_dir: str | Path, force: bool = False) -> Path:
    """2-D MDS maps of the two prompt sets at chosen layers, as one grid figure (Fig. 8)."""
    return run_stage("probe-mds", cfg, out_dir, lambda o: _run_mds(cfg, o),
                     upstream={"model": cfg.model}, force=force)[0]
