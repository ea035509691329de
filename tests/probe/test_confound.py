"""``dcr probe confound``: a refine stage's confound diagnostic on any model, on the refine stage's own prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.errors import ConfigError
from dcr.io import read_json, read_jsonl
from dcr.probe import ConfoundConfig, confound
from dcr.probe.confound import probe_seed, refine_setup
from dcr.refine import RefineConfig, refine

runner = CliRunner()


def _accuracies(scores: dict) -> dict[str, float | None]:
    return {f"{kind}/{group}": row["probe_accuracy"] for kind, groups in scores.items()
            for group, row in groups.items()}


@pytest.fixture(scope="module")
def refined(tiny_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), limit=6, epochs=1, batch_size=6,
                       eval_batch_size=64, lr=1e-2, retention_n=0, confound_n=12, seed=3)
    return refine(cfg, tmp_path_factory.mktemp("confound") / "refine")


def test_scores_the_refine_stages_before_and_after_again(refined: Path, tiny_dir: Path, data_dir: Path,
                                                         tmp_path: Path) -> None:
    own = read_json(refined / "metrics.json")["confound"]
    before = read_json(confound(ConfoundConfig(model=str(tiny_dir), refine_stage=str(refined),
                                               data_dir=str(data_dir)), tmp_path / "base") / "metrics.json")
    after = read_json(confound(ConfoundConfig(model=str(refined), refine_stage=str(refined),
                                              data_dir=str(data_dir)), tmp_path / "refined") / "metrics.json")
    assert before["seed"] == after["seed"] == 3 and before["layer"] == read_json(refined / "metrics.json")["layer"]
    assert _accuracies(before["confound"]) == _accuracies(own["before"])
    assert _accuracies(after["confound"]) == pytest.approx(_accuracies(own["after"]), abs=0.05)
    assert _accuracies(own["before"]) != _accuracies(own["after"])  # lr 1e-2 moved the features: a real check
    assert before["refine_stage_confound"] == own
    assert read_json(tmp_path / "base" / "manifest.json")["data_files_unchecked"] == []  # all read was checked first
    rows = read_jsonl(tmp_path / "base" / "results.jsonl")
    assert {r["metric"] for r in rows} == {"probe_class_within_source", "probe_source_within_class"}
    assert all(r["split"] == "never-trained" and r["stage"] == "probe-confound" for r in rows)
    other = read_json(confound(ConfoundConfig(model=str(tiny_dir), refine_stage=str(refined), seed=4,
                                              data_dir=str(data_dir)), tmp_path / "seed4") / "metrics.json")
    # another seed redraws the probe's samples and folds, but the refine data (the training prompts left out) stay
    # the refine stage's own: its seed is not the probe's
    assert other["seed"] == 4 and other["refine_seed"] == 3 and other["weights_dtype"] == "fp32"
    rcfg, _ = refine_setup(ConfoundConfig(model=str(tiny_dir), refine_stage=str(refined), seed=4))
    assert rcfg.seed == 3 and probe_seed(ConfoundConfig(model="m", refine_stage="r", seed=4), rcfg) == 4
    assert _accuracies(other["confound"]) != _accuracies(before["confound"])


def test_bad_refine_stage(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refine_stage must be a non-empty string"):
        ConfoundConfig(model=str(tiny_dir))
    with pytest.raises(ConfigError, match="template"):
        ConfoundConfig(model=str(tiny_dir), refine_stage=str(tmp_path), template="plain")
    result = runner.invoke(app, ["probe", "confound", "--model", str(tiny_dir), "--refine-stage", str(tmp_path),
                                 "--out", str(tmp_path / "out"), "--quiet"])
    # a DcrError: `dcr` prints its one line and exits 2 (tests/test_cli.py); checked before anything is written
    assert isinstance(result.exception, ConfigError) and "not a finished refine stage" in str(result.exception)
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["probe", "confound", "--model", str(tiny_dir), "--refine-stage",
                                 str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2"), "--quiet"])
    assert isinstance(result.exception, ConfigError) and "nowhere" in str(result.exception)
    assert not (tmp_path / "out2").exists()
