"""Refine on CPU: the same seed gives the same loss curve and bit-identical weights; a run killed mid-training
resumes from its checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import dcr.refine.train as refine_train
from dcr.io import read_json
from dcr.refine import RefineConfig, refine

FAST = dict(limit=8, epochs=2, batch_size=6, eval_batch_size=64, xstest_heldout_frac=0.05, save_every=2,
            retention_n=0, confound_n=0)  # measurements only (not in the weights): tested in test_stage.py


def _losses(out: Path) -> list[dict[str, str]]:
    with open(out / "loss.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_same_seed_same_curve_and_weights(tiny_dir: Path, data_dir: Path, tmp_path: Path, dtype: str) -> None:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), dtype=dtype, **FAST)
    a, b = refine(cfg, tmp_path / "a"), refine(cfg, tmp_path / "b")
    assert _losses(a) == _losses(b)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_json(a / "metrics.json")["eval"] == read_json(b / "metrics.json")["eval"]


def test_killed_refine_resumes_to_the_same_end(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), dtype="fp32", **FAST)
    whole = refine(cfg, tmp_path / "whole")
    real, steps = refine_train.train_step, []

    def killed_at_step_four(*args: Any, **kw: Any) -> dict[str, float]:
        steps.append(1)
        if len(steps) == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(refine_train, "train_step", killed_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        refine(cfg, tmp_path / "part")
    assert (tmp_path / "part" / "checkpoints" / "refine.safetensors").is_file()  # kept for the resume
    monkeypatch.setattr(refine_train, "train_step", real)
    part = refine(cfg, tmp_path / "part")
    assert "resumed: 2 of" in (part / "stage.log").read_text()
    assert _losses(part) == _losses(whole)
    wp, ww = _weights(part), _weights(whole)
    assert all(torch.allclose(wp[k], ww[k], rtol=0, atol=1e-6) for k in ww)
    assert read_json(part / "metrics.json")["eval"] == read_json(whole / "metrics.json")["eval"]
    assert not (part / "checkpoints").exists()  # removed once the model is saved
