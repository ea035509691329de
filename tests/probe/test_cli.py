"""The ``dcr probe`` verbs end to end on a tiny saved model (and a PEFT adapter checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.config import build_config
from dcr.errors import ConfigError
from dcr.io import read_json, read_jsonl
from dcr.probe.config import NtkConfig

runner = CliRunner()


def _ok(args: list[str]) -> None:
    result = runner.invoke(app, ["probe", *args, "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_ntk_before_after(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ntk"
    _ok(["ntk", "--model", str(tiny_dir), "--model-after", str(tiny_dir), "--n", "2", "--top-k", "2",
         "--layers", "1", "--out", str(out)])
    metrics = read_json(out / "metrics.json")
    before, after = np.array(metrics["before"]["matrix"]), np.array(metrics["after"]["matrix"])
    assert before.shape == (3, 3) and np.all(np.isfinite(before)) and np.all(before > 0)
    assert np.allclose(before, after)  # the same model twice
    assert metrics["before"]["order"] == ["s-toxic", "toxic", "normal"]
    assert (out / "ntk.png").stat().st_size > 1000
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 20 and {r["metric"] for r in rows} == {"ntk_norm", "ntk_ratio_stoxic_toxic"}
    ratios = [r["value"] for r in rows if r["metric"] == "ntk_ratio_stoxic_toxic"]
    assert ratios[0] == metrics["before"]["ratio_stoxic_toxic"] == ratios[1] > 0  # the same model twice
    norms = np.array(read_json(out / "ntk_norms.json")["before"]["norms"])
    assert np.allclose(np.diag(norms), 1.0)


def test_separability_and_mds(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    _ok(["separability", "--model", str(tiny_dir), "--n", "6", "--out", str(tmp_path / "sep")])
    metrics = read_json(tmp_path / "sep" / "metrics.json")
    assert [s["layer"] for s in metrics["layers"]] == [0, 1, 2, 3]
    assert all(0.0 <= s["kmeans_acc"] <= 1.0 and 0.0 <= s["probe_acc"] <= 1.0 for s in metrics["layers"])
    assert metrics["suggested"]["layer"] in (1, 2) and metrics["suggested"]["reason"]
    assert (tmp_path / "sep" / "separability.png").exists()
    _ok(["mds", "--model", str(tiny_dir), "--n", "5", "--layers", "0,3", "--method", "classical",
         "--out", str(tmp_path / "mds")])
    coords = (tmp_path / "mds" / "mds_coords.csv").read_text().splitlines()
    assert len(coords) == 1 + 2 * 10 and (tmp_path / "mds" / "mds.png").exists()


def test_bad_layer_is_a_clear_error(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["probe", "mds", "--model", str(tiny_dir), "--n", "3", "--layers", "9",
                                 "--out", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code != 0 and "out of range" in str(result.exception)


def test_ntk_track_over_hf_and_peft_checkpoints(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from dcr.models import load_model

    model, _ = load_model(str(tiny_dir), dtype="fp32")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    ckpts = tmp_path / "ckpts"
    peft_model.save_pretrained(ckpts / "checkpoint-5")
    cfg_path = ckpts / "checkpoint-5" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(tiny_dir)
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "track"
    _ok(["ntk-track", "--checkpoints", str(tiny_dir), str(ckpts), "--n", "2", "--top-k", "2", "--layers", "1",
         "--out", str(out)])
    pairs = read_json(out / "metrics.json")["pairs"]
    assert len(pairs) == 2 and set(pairs[0]) == {"s-toxic/s-toxic", "s-toxic/toxic", "s-toxic/normal",
                                                 "toxic/toxic", "toxic/normal", "normal/normal"}
    assert pairs[0] != pairs[1]  # the random LoRA update changes the kernel
    assert (out / "ntk_track.png").exists() and len((out / "tracking.csv").read_text().splitlines()) == 13


def test_config_rejects_fd_in_bf16_and_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="fp32"):
        NtkConfig(model="m", dtype="bf16", method="fd")
    NtkConfig(model="m", dtype="bf16", method="jvp")
    with pytest.raises(ConfigError, match="unknown field"):
        build_config(NtkConfig, overrides={"model": "m"}, sets=["topk=3"])
