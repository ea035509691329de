"""``xstest_heldout_frac: 0`` (the paper's 250:500): all XSTest safe prompts trained on, held-out metrics skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcr.data import xstest_split
from dcr.errors import ConfigError
from dcr.io import read_json
from dcr.refine import RefineConfig, refine
from dcr.refine.data import NO_HELDOUT, build_data
from dcr.results import load


def test_config_accepts_zero_and_rejects_one() -> None:
    assert RefineConfig(model="m", xstest_heldout_frac=0).xstest_heldout_frac == 0
    with pytest.raises(ConfigError, match=r"xstest_heldout_frac must be a number in \[0, 1\)"):
        RefineConfig(model="m", xstest_heldout_frac=1.0)


def test_build_data_trains_on_all_250_against_500(data_dir: Path) -> None:
    data = build_data(str(data_dir), 0.0, 0, seed=0, toxic_ratio=2.0, limit=None, eval_toxic="both")
    in_dist, held = xstest_split(0.0, 0, data_dir)
    assert (len(data.seemingly), len(data.toxic), len(data.heldout), len(held)) == (250, 500, 0, 0)
    assert [r.id for r in data.seemingly] == [r.id for r in in_dist]
    assert data.eval_toxic == {}  # no held-out safe prompts: no held-out evaluation pairs either
    split = data.split_json()
    assert split["heldout_ids"] == [] and split["note"] == NO_HELDOUT and "in-distribution" in NO_HELDOUT
    assert "note" not in build_data(str(data_dir), 0.2, 0, 0, 2.0, 16, "hh").split_json()


def test_a_tiny_near_zero_fraction_still_fails_loudly(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="holds out 0 XSTest safe prompt"):
        build_data(str(data_dir), 0.001, 0, seed=0, toxic_ratio=2.0, limit=None, eval_toxic="hh")


def test_stage_runs_and_records_only_the_training_fit(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                      one_torch_thread: None) -> None:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), xstest_heldout_frac=0, limit=6, epochs=1,
                       batch_size=6, eval_batch_size=64, retention_n=4, retention_generations=1)
    out = refine(cfg, tmp_path / "out")
    metrics = read_json(out / "metrics.json")
    assert metrics["n_heldout"] == 0 and set(metrics["eval"]) == {"train"}
    # retention (AlpacaEval, not XSTest): split all; the confound probe (other families' never-trained prompts)
    rows = [r for r in load(out) if r["benchmark"] != "heldout-nll" and not r["benchmark"].startswith("confound-")]
    assert {r["split"] for r in load(out) if r["benchmark"] == "heldout-nll"} == {"all"}
    assert rows and {r["split"] for r in rows} == {"train"} and {r["benchmark"] for r in rows} == {"xstest-vs-hh"}
    within = metrics["confound"]["after"]["class_within_source"]
    assert within["xstest"]["n"] == [50, 50] and within["coconot"]["probe_accuracy"] is not None  # limit 6: untrained
    assert read_json(out / "split.json")["note"] == NO_HELDOUT
