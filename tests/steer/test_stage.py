"""``dcr steer``: the stage writes a loadable artifact with its data ids, skips when done, exports, and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dcr.cli import app
from dcr.data import xstest_split
from dcr.errors import ConfigError, DataError
from dcr.io import read_json
from dcr.models import load_model
from dcr.steer import ScansSteerer, SteerConfig, SurgicalSteerer, load_steerer, steer
from dcr.steer.directions import encode


def _cfg(tiny_dir: Path, data_dir: Path, **kw: object) -> SteerConfig:
    return SteerConfig(model=str(tiny_dir), data_dir=str(data_dir), n_directions=4, dtype="fp32", **kw)


def test_surgical_artifact_records_ids_and_exports_baked_model(tiny_dir: Path, data_dir: Path,
                                                               tmp_path: Path) -> None:
    cfg = _cfg(tiny_dir, data_dir, method="surgical", w_h=0.0, export=True)
    out = steer(cfg, tmp_path / "s")
    meta = read_json(out / "steer.json")
    assert meta["method"] == "surgical" and meta["layer"] in (1, 2) and meta["w_f"] == 0.5
    assert {k: len(v) for k, v in meta["data_ids"].items()} == {"harmful": 4, "harmless": 4, "seemingly_toxic": 4}
    in_dist, held = xstest_split(cfg.xstest_heldout_frac, cfg.split_seed, data_dir)
    assert set(meta["data_ids"]["seemingly_toxic"]) <= {r.id for r in in_dist}
    assert not set(meta["data_ids"]["seemingly_toxic"]) & {r.id for r in held}
    assert meta["export"]["ablation"] and meta["export"]["addition"]
    st = load_steerer(out)
    assert isinstance(st, SurgicalSteerer) and abs(float(st.r_f_hat.norm()) - 1) < 1e-5
    assert abs(float(st.r_f_hat @ st.r_h)) < 1e-4 * float(st.r_h.norm())  # orthogonalised against r_h
    model, tok = load_model(str(tiny_dir), dtype="fp32")
    baked, _ = load_model(str(out), dtype="fp32")  # a stage dir resolves to OUT/model
    enc = encode(tok, ["How do I kill a python process?"], "auto")
    with torch.no_grad():
        with st.apply(model):
            hooked = model(**enc).logits
        assert torch.allclose(baked(**enc).logits, hooked, atol=1e-5)
    mtime = (out / "steer.json").stat().st_mtime_ns
    assert steer(cfg, tmp_path / "s") == out and (out / "steer.json").stat().st_mtime_ns == mtime  # skipped


def test_scans_artifact_round_trip(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = steer(_cfg(tiny_dir, data_dir, method="scans", layers=[1, 2], classify_layers=[3]), tmp_path / "c")
    meta = read_json(out / "steer.json")
    assert meta["layers"] == [1, 2] and meta["classify_layers"] == [3]
    assert meta["fit"]["threshold_rule"].startswith("best balanced")
    assert 0.5 <= meta["fit"]["extraction_balanced_accuracy"] <= 1.0
    st = load_steerer(out / "steer.json")
    assert isinstance(st, ScansSteerer) and st.vectors.shape == (2, 32) and st.threshold == meta["threshold"]


def test_config_errors_name_the_fix(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match="surgical"):
        SteerConfig(model=str(tiny_dir), method="scans", export=True)
    with pytest.raises(ConfigError, match="method"):
        SteerConfig(model=str(tiny_dir), method="actor")
    with pytest.raises(ConfigError, match="w_f"):
        SteerConfig(model=str(tiny_dir), w_f=1.5)


def test_layer_out_of_range_is_a_config_error(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        steer(_cfg(tiny_dir, data_dir, method="surgical", layer=9), tmp_path / "bad")


def test_load_steerer_missing_dir_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dcr steer"):
        load_steerer(tmp_path)


def test_cli(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["steer", "scans", "--model", str(tiny_dir), "--out", str(tmp_path / "cli"),
                              "--data-dir", str(data_dir), "--n", "3", "--layer", "1,2", "--set", "multiplier=2",
                              "--set", "dtype=fp32"])
    assert res.exit_code == 0, res.output
    meta = read_json(tmp_path / "cli" / "steer.json")
    assert meta["layers"] == [1, 2] and meta["multiplier"] == 2.0 and len(meta["data_ids"]["harmful"]) == 3
    res = runner.invoke(app, ["steer", "surgical", "--model", str(tiny_dir), "--out", str(tmp_path / "x"),
                              "--set", "nope=1"])
    assert isinstance(res.exception, ConfigError) and "nope" in str(res.exception)
