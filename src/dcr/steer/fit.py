"""Fit the steerers from last-prompt-token activations of the extraction prompt sets."""

from __future__ import annotations

from typing import Any

import torch

from dcr.errors import ConfigError
from dcr.models import num_layers
from dcr.steer.directions import PromptSet, mean_diff, orthogonalize, prompt_states, separation, unit
from dcr.steer.scans import ScansSteerer, calibrate, score_states
from dcr.steer.surgical import SurgicalSteerer


def middle_half(n: int) -> list[int]:
    """Candidate Surgical layers: blocks in [n // 4, 3n // 4) (at least one)."""
    lo, hi = n // 4, max(n // 4 + 1, (3 * n) // 4)
    return list(range(lo, hi))


def scans_layers(n: int) -> list[int]:
    """Default SCANS steered blocks: [round(0.3 n), round(0.6 n)) (SCANS: 10..19 of 32)."""
    lo, hi = round(0.3 * n), max(round(0.3 * n) + 1, round(0.6 * n))
    return list(range(lo, hi))


def _check_layers(layers: list[int], n: int, name: str) -> None:
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{name} {bad} out of range: the model has blocks 0..{n - 1}. Fix: pass valid block indices")


def _states(model: Any, tok: Any, cfg: Any, sets: dict[str, PromptSet], layers: list[int]) -> dict[str, torch.Tensor]:
    return {k: prompt_states(model, tok, s.prompts, layers, cfg.template, cfg.batch_size, cfg.max_length)
            for k, s in sets.items()}


def fit_surgical(model: Any, tok: Any, cfg: Any, sets: dict[str, PromptSet]) -> tuple[SurgicalSteerer, dict[str, Any]]:
    """Directions at ``cfg.layer`` (or the best-separating block of the middle half) and the steerer."""
    n = num_layers(model)
    cands = [cfg.layer] if cfg.layer is not None else middle_half(n)
    _check_layers(cands, n, "layer")
    st = _states(model, tok, cfg, sets, cands)
    r_h_all = mean_diff(st["harmful"], st["harmless"])  # [L, d]
    sep = separation(st["harmful"], st["harmless"], r_h_all)
    k = int(sep.argmax())
    layer = cands[k]
    r_h = r_h_all[k]
    r_f_raw = mean_diff(st["seemingly_toxic"][k], st["harmless"][k])
    r_f = orthogonalize(r_f_raw, r_h)
    steerer = SurgicalSteerer(unit(r_f), r_h, layer, cfg.w_f, cfg.w_h)
    info = {
        "layer": layer,
        "layer_rule": "given" if cfg.layer is not None else "max separation of harmful vs harmless along r_h "
                                                             "over blocks [n//4, 3n//4)",
        "separation": {str(c): round(float(s), 4) for c, s in zip(cands, sep)},
        "norm_r_h": float(r_h.norm()), "norm_r_f": float(r_f_raw.norm()), "norm_r_f_orth": float(r_f.norm()),
        "cos_r_f_r_h": float(torch.nn.functional.cosine_similarity(r_f_raw, r_h, dim=0)),
    }
    extra = {"r_f_raw": r_f_raw}
    return steerer, {"info": info, "tensors": extra}


def fit_scans(model: Any, tok: Any, cfg: Any, sets: dict[str, PromptSet]) -> tuple[ScansSteerer, dict[str, Any]]:
    """Unit steering vectors at the steered blocks, the classifier at the classification blocks, the threshold."""
    n = num_layers(model)
    layers = list(cfg.layers) if cfg.layers is not None else scans_layers(n)
    cls_layers = list(cfg.classify_layers) if cfg.classify_layers is not None else list(layers)
    _check_layers(layers, n, "layers")
    _check_layers(cls_layers, n, "classify_layers")
    union = sorted(set(layers) | set(cls_layers))
    st = _states(model, tok, cfg, sets, union)
    pick = {i: j for j, i in enumerate(union)}

    def sub(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        return x[[pick[i] for i in idx]]

    vectors = unit(mean_diff(sub(st["harmful"], layers), sub(st["harmless"], layers)))
    h_c, b_c = sub(st["harmful"], cls_layers), sub(st["harmless"], cls_layers)
    direction = unit(mean_diff(h_c, b_c))
    mid = (h_c.mean(-2) + b_c.mean(-2)) / 2
    s_h, s_b = score_states(h_c, direction, mid), score_states(b_c, direction, mid)
    threshold, _ = calibrate(s_h, s_b)
    if cfg.threshold is not None:
        threshold = float(cfg.threshold)
    acc = 0.5 * (float((s_h >= threshold).float().mean()) + float((s_b < threshold).float().mean()))
    info: dict[str, Any] = {
        "layers": layers, "classify_layers": cls_layers, "threshold": threshold,
        "threshold_rule": "given" if cfg.threshold is not None else "best balanced accuracy on extraction prompts",
        "extraction_balanced_accuracy": round(acc, 4),
        "harmful_classified_harmful": round(float((s_h >= threshold).float().mean()), 4),
        "harmless_classified_harmful": round(float((s_b >= threshold).float().mean()), 4),
    }
    if "seemingly_toxic" in st:
        s_s = score_states(sub(st["seemingly_toxic"], cls_layers), direction, mid)
        info["seemingly_toxic_classified_harmful"] = round(float((s_s >= threshold).float().mean()), 4)
    steerer = ScansSteerer(vectors, layers, direction, mid, cls_layers, threshold, cfg.multiplier,
                           cfg.add_for_harmful)
    return steerer, {"info": info, "tensors": {}}
