"""Steering artifacts: ``OUT/steer.json`` (method, config, layers, weights, threshold, data ids) and
``OUT/directions.safetensors``; ``load_steerer(dir)`` rebuilds the steerer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dcr.errors import DataError
from dcr.io import read_json, write_json
from dcr.steer.scans import ScansSteerer
from dcr.steer.surgical import SurgicalSteerer

STEER_JSON = "steer.json"
DIRECTIONS = "directions.safetensors"
FORMAT = 1
TENSOR_KEYS = ("r_f_hat", "r_h", "vectors", "cls_direction", "cls_mid")

Steerer = SurgicalSteerer | ScansSteerer


def steerer_tensors(steerer: Steerer) -> dict[str, torch.Tensor]:
    if isinstance(steerer, SurgicalSteerer):
        return {"r_f_hat": steerer.r_f_hat, "r_h": steerer.r_h}
    return {"vectors": steerer.vectors, "cls_direction": steerer.cls_direction, "cls_mid": steerer.cls_mid}


def steerer_params(steerer: Steerer) -> dict[str, Any]:
    if isinstance(steerer, SurgicalSteerer):
        return {"layer": steerer.layer, "w_f": steerer.w_f, "w_h": steerer.w_h}
    return {"layers": steerer.layers, "classify_layers": steerer.classify_layers, "threshold": steerer.threshold,
            "multiplier": steerer.multiplier, "add_for_harmful": steerer.add_for_harmful}


def save_steerer(out: Path, steerer: Steerer, meta: dict[str, Any], extra: dict[str, torch.Tensor]) -> None:
    """Write directions.safetensors (fp32, contiguous) then steer.json (atomic)."""
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in {**steerer_tensors(steerer), **extra}.items()}
    tmp = out / f".{DIRECTIONS}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out / DIRECTIONS)
    write_json(out / STEER_JSON, {"format": FORMAT, "method": steerer.method, **steerer_params(steerer), **meta})


def load_steerer(path: str | Path) -> Steerer:
    """The steerer stored by ``dcr steer`` in ``path`` (a stage directory, or its steer.json)."""
    path = Path(path)
    if path.name == STEER_JSON:
        path = path.parent
    meta_path, tens_path = path / STEER_JSON, path / DIRECTIONS
    for p in (meta_path, tens_path):
        if not p.exists():
            raise DataError(p, "not found", "pass the output directory of `dcr steer surgical|scans`")
    meta = read_json(meta_path)
    t = load_file(str(tens_path))
    method = meta.get("method")
    try:
        if method == "surgical":
            return SurgicalSteerer(t["r_f_hat"], t["r_h"], int(meta["layer"]), float(meta["w_f"]), float(meta["w_h"]))
        if method == "scans":
            return ScansSteerer(t["vectors"], [int(i) for i in meta["layers"]], t["cls_direction"], t["cls_mid"],
                                [int(i) for i in meta["classify_layers"]], float(meta["threshold"]),
                                float(meta["multiplier"]), bool(meta.get("add_for_harmful", True)))
    except KeyError as exc:
        where = tens_path if exc.args[0] in TENSOR_KEYS else meta_path
        raise DataError(where, f"missing field {exc.args[0]!r}", "re-run `dcr steer` with --force") from None
    raise DataError(meta_path, f"method {method!r} is not surgical or scans", "re-run `dcr steer` with --force")
