"""The stage end to end on a tiny model: outputs, reload, skip-when-done, and the CLI verb."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dcr.io import read_json
from dcr.models import load_model
from dcr.refine import RefineConfig, refine
from dcr.results import load

FAST = dict(limit=6, epochs=1, batch_size=6, eval_batch_size=64, xstest_heldout_frac=0.05, retention_n=8,
            retention_generations=2)


@pytest.fixture(scope="module")
def refined(tiny_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RefineConfig, Path]:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), **FAST)
    return cfg, refine(cfg, tmp_path_factory.mktemp("refine") / "out")


def test_outputs_are_written(refined: tuple[RefineConfig, Path]) -> None:
    cfg, out = refined
    for name in ("config.yaml", "split.json", "loss.csv", "loss.png", "metrics.json", "results.jsonl",
                 "manifest.json", "model/config.json", "model/model.safetensors", "model/tokenizer_config.json"):
        assert (out / name).exists(), name
    metrics = read_json(out / "metrics.json")
    assert metrics["layer"] == 2 and metrics["train"]["steps"] == 2  # ceil(12 / 6) steps, default layer 4 // 2
    for phase in ("before", "after"):
        assert set(metrics["eval"]["hh"][phase]) == {"cross_class_cosine", "within_class_cosine",
                                                     "kmeans_accuracy", "probe_accuracy"}
    split = read_json(out / "split.json")
    assert len(split["toxic_prompts"]) == len(split["toxic_ids"]) == 6
    # retention and the confound diagnostic: their own tests
    rows = [r for r in load(out) if r["benchmark"] != "heldout-nll" and not r["benchmark"].startswith("confound-")]
    assert len(rows) == 2 * 2 * 4 and {r["phase"] for r in rows} == {"before", "after"}
    confound = [r for r in load(out) if r["benchmark"].startswith("confound-")]
    assert {r["phase"] for r in confound} == {"before", "after"}
    assert all(r["split"] == "never-trained" for r in confound)
    assert set(metrics["confound"]) == {"before", "after"}
    assert {r["split"] for r in rows} == {"held-out", "train"} and set(metrics["eval"]) == {"hh", "train"}
    assert (out / "loss.csv").read_text().splitlines()[0].startswith("step,epoch,loss,circle,nll")


def test_refined_model_loads_and_differs(refined: tuple[RefineConfig, Path], tiny_dir: Path) -> None:
    _, out = refined
    model, tok = load_model(str(out), dtype="fp32")
    base, _ = load_model(str(tiny_dir), dtype="fp32")
    assert tok.padding_side == "left"
    if json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16":  # save_dtype auto, bf16
        base.to(torch.bfloat16).float()  # frozen weights: the originals rounded to the saved dtype
    sd, base_sd = model.state_dict(), base.state_dict()
    q0, up3 = "model.layers.0.self_attn.q_proj.weight", "model.layers.3.mlp.up_proj.weight"
    assert not torch.equal(sd[q0], base_sd[q0])
    assert torch.equal(sd[up3], base_sd[up3])
    assert torch.equal(sd["lm_head.weight"], base_sd["lm_head.weight"])


def test_rerun_is_skipped(refined: tuple[RefineConfig, Path]) -> None:
    cfg, out = refined
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert refine(cfg, out) == out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp


def test_cli_verb_runs_lora(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from dcr.cli import app

    out = tmp_path / "cli"
    args = ["refine", "--model", str(tiny_dir), "--out", str(out), "--limit", "6", "--epochs", "1", "--lora",
            "--layer", "1", "--data-dir", str(data_dir), "--quiet", "--set", "batch_size=6",
            "--set", "xstest_heldout_frac=0.05", "--set", "nll_weight=0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "done" and manifest["config"]["lora"] is True and manifest["config"]["layer"] == 1
    assert read_json(out / "metrics.json")["layer"] == 1
    load_model(str(out / "model"), dtype="fp32")


def test_cli_reports_bad_config(tmp_path: Path) -> None:
    from dcr.cli import app

    result = CliRunner().invoke(app, ["refine", "--model", "x", "--out", str(tmp_path), "--set", "margin=2"])
    assert result.exit_code != 0
    assert "margin" in str(result.exception) + result.output


def test_failed_refine_leaves_only_an_honest_manifest(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import dcr.refine.stage

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("model file truncated")

    monkeypatch.setattr(dcr.refine.stage, "load_model", broken)  # fails after config.yaml and split.json
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), **FAST)
    with pytest.raises(RuntimeError):
        refine(cfg, tmp_path / "out")
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert manifest["status"] == "failed" and manifest["error"] == "model file truncated"
    assert {"config.yaml", "split.json"} <= set(manifest["removed"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "stage.log"]
    assert "Traceback" in (tmp_path / "out" / "stage.log").read_text()


def test_layer_out_of_range_fails_before_anything_is_written(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from dcr.errors import ConfigError

    with pytest.raises(ConfigError, match="layer 999 out of range.*blocks 0..3"):
        refine(RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), layer=999, **FAST), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gradient_checkpointing_gives_the_same_losses(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir),
                       **{**FAST, "dtype": "fp32", "retention_n": 0, "confound_n": 0})
    a = read_json(refine(cfg, tmp_path / "a") / "metrics.json")["train"]
    b = read_json(refine(dataclasses.replace(cfg, gradient_checkpointing=True), tmp_path / "b") / "metrics.json")
    assert b["train"]["first_loss"] == pytest.approx(a["first_loss"], abs=1e-5)
    assert b["train"]["final_loss"] == pytest.approx(a["final_loss"], abs=1e-5)


def test_set_checkpointing_toggles_without_a_deprecation_warning(tiny_dir: Path) -> None:
    import warnings

    from dcr.models import load_model
    from dcr.refine.stage import set_checkpointing

    model, _ = load_model(str(tiny_dir), dtype="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        set_checkpointing(model, True)
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        set_checkpointing(model, False)
        assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def test_retention_is_measured_before_and_after(refined: tuple[RefineConfig, Path]) -> None:
    from dcr.io import read_jsonl

    cfg, out = refined
    kept = read_json(out / "metrics.json")["retention"]
    assert kept["n"] == cfg.retention_n and kept["tokens"] > 0 and kept["action"] == "fail"
    assert kept["nll_rise"] == pytest.approx(kept["nll_after"] - kept["nll_before"])
    assert kept["ok"] is (kept["nll_rise"] <= cfg.retention_max_rise) and kept["ok"]
    rows = read_jsonl(out / "retention.jsonl")
    assert len(rows) == cfg.retention_generations and {"prompt", "before", "after"} <= set(rows[0])
    nll = [r for r in load(out) if r["benchmark"] == "heldout-nll"]
    assert sorted(r["phase"] for r in nll) == ["after", "before"] and nll[0]["n"] == cfg.retention_n
    for phase in ("before", "after"):  # how the keyword judge reads the greedy answers
        assert sum(kept[f"answers_{phase}"].values()) == cfg.retention_generations


def test_answer_labels_count_refusals_empty_and_degenerate_answers() -> None:
    from dcr.refine.retention import answer_labels

    gens = [{"prompt": "How do I bake bread?", "completion": c} for c in
            ("Mix flour, water and yeast, then bake.", "I'm sorry, but I can't assist with that.", "",
             "etc etc etc etc etc etc etc etc etc etc etc etc")]
    assert answer_labels(gens) == {"compliance": 1, "degenerate": 1, "empty": 1, "refusal": 1}


def test_a_refine_that_loses_the_language_fails_or_warns(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A rise above retention_max_rise: the stage fails (no model saved, the answers in its log), or with
    retention_action warn keeps the model and records ok false. The measure is replaced by one whose NLL rises
    from the first call (before training) to the second (after)."""
    import dcr.refine.stage as stage_mod

    calls: list[int] = []

    def rising(model: object, tok: object, cfg: RefineConfig, autocast: object) -> dict[str, object]:
        calls.append(1)
        gen = [{"id": "alpaca-eval-3", "prompt": "Name a fruit.", "completion": "An apple." if len(calls) % 2
                else "xfarm of 2014.04.01\nxfarm of 2014.04.02"}]
        return {"nll_per_token": 1.0 if len(calls) % 2 else 2.5, "n": 4, "tokens": 40, "generations": gen}

    monkeypatch.setattr(stage_mod, "measure", rising)
    small = {**FAST, "retention_n": 4, "retention_generations": 1}
    with pytest.raises(Exception, match="did not preserve the model's language"):
        refine(RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), **small), tmp_path / "fail")
    assert not (tmp_path / "fail" / "model").exists()
    log = (tmp_path / "fail" / "stage.log").read_text()
    assert "retention alpaca-eval-3" in log and "xfarm of 2014.04.01" in log
    out = refine(RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), retention_action="warn", **small),
                 tmp_path / "warn")
    kept = read_json(out / "metrics.json")["retention"]
    assert kept["ok"] is False and kept["nll_rise"] == pytest.approx(1.5)
    assert (out / "model" / "config.json").is_file()


def test_retention_fields_are_not_in_the_stage_key(tiny_dir: Path, data_dir: Path) -> None:
    from dcr.fingerprint import stage_key

    a = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), **FAST)
    b = dataclasses.replace(a, retention_n=0, retention_action="warn", retention_max_rise=2.0)
    assert stage_key(a) == stage_key(b)
