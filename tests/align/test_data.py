"""Training mix: proportional limit, refine-overlap exclusion, no AlpacaEval, STL-aug in-distribution only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dcr.align.config import AlignConfig
from dcr.align.data import (
    aug_prompts,
    build_mix,
    general_prompts,
    normalize_prompt,
    safety_pairs,
    split_counts,
)
from dcr.config import build_config
from dcr.data import load_alpaca_eval, load_refusal_pairs, xstest_split
from dcr.errors import ConfigError, DataError

M = "smollm2-135m"  # data tests never load it


def test_split_counts_scales_proportionally() -> None:
    assert split_counts({"general": 20000, "safety": 1000, "aug": 0}, 210) == {"general": 200, "safety": 10, "aug": 0}
    got = split_counts({"general": 7, "safety": 3, "aug": 5}, 4)
    assert sum(got.values()) == 4 and got["general"] >= got["safety"]
    assert split_counts({"general": 5, "safety": 5}, None) == {"general": 5, "safety": 5}
    assert split_counts({"general": 5, "safety": 5}, 100) == {"general": 5, "safety": 5}


def test_config_checks_and_layers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="method"):
        AlignConfig(model="m", method="dpo")
    with pytest.raises(ConfigError, match="micro_batch"):
        AlignConfig(model="m", micro_batch=0)
    yml = tmp_path / "a.yaml"
    yml.write_text("align:\n  n_general: 10\n  epochs: 2\n")
    cfg = build_config(AlignConfig, yml, {"model": "m", "epochs": 1.0, "n_safety": None}, ["lora_r=4"], section="align")
    assert (cfg.n_general, cfg.epochs, cfg.lora_r, cfg.n_safety) == (10, 1.0, 4, 1000)
    assert cfg.effective_batch == 128


def test_safety_pairs_exclude_refine_toxic_prompts(data_dir: Path, tmp_path: Path) -> None:
    pairs = load_refusal_pairs(data_dir)
    used = [pairs[i].prompt for i in range(0, 40, 2)]
    # refine may store prompts with different case / spacing: they must still match
    (tmp_path / "split.json").write_text(json.dumps({"toxic_prompts": [f"  {p.upper()}  " for p in used]}))
    cfg = AlignConfig(model=M, data_dir=str(data_dir), exclude_from=str(tmp_path), n_safety=len(pairs))
    rows, stats = safety_pairs(cfg, len(pairs))
    banned = {normalize_prompt(p) for p in used}
    assert stats["safety_excluded_overlap"] >= len(banned)
    assert len(rows) == len(pairs) - stats["safety_excluded_overlap"]
    assert not banned & {normalize_prompt(r["prompt"]) for r in rows}
    rows2, _ = safety_pairs(AlignConfig(model=M, data_dir=str(data_dir)), 25)
    assert len(rows2) == 25 and len({r["id"] for r in rows2}) == 25


def test_exclude_from_needs_split_json(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split.json"):
        safety_pairs(AlignConfig(model=M, data_dir=str(data_dir), exclude_from=str(tmp_path)), 5)


def test_general_prompts_never_alpaca_eval(data_dir: Path) -> None:
    cfg = AlignConfig(model=M, data_dir=str(data_dir))
    banned = {normalize_prompt(p.prompt) for p in load_alpaca_eval(data_dir)}
    got = general_prompts(cfg, 3000)
    assert len(got) == 3000 and not banned & {normalize_prompt(r.prompt) for r in got}
    assert [r.id for r in general_prompts(cfg, 50)] == [r.id for r in general_prompts(cfg, 50)]


def test_aug_prompts_only_in_distribution(data_dir: Path) -> None:
    cfg = AlignConfig(model=M, data_dir=str(data_dir), method="stl-aug", xstest_heldout_frac=0.3, split_seed=3)
    in_dist, held = xstest_split(0.3, 3, data_dir)
    got = aug_prompts(cfg, None)
    assert {r.id for r in got} == {r.id for r in in_dist}
    assert not {r.id for r in got} & {r.id for r in held}
    assert len(aug_prompts(cfg, 10)) == 10


def test_build_mix_with_general_file_and_limit(data_dir: Path, tmp_path: Path) -> None:
    gen = tmp_path / "general.jsonl"
    gen.write_text("".join(json.dumps({"prompt": f"say {i}", "response": f"{i}"}) + "\n" for i in range(30)))
    cfg = AlignConfig(model=M, data_dir=str(data_dir), general_file=str(gen), n_general=20, n_safety=10, limit=15)
    rows, stats = build_mix(cfg, tmp_path / "out")
    kinds = [r["kind"] for r in rows]
    assert (kinds.count("general"), kinds.count("safety"), stats["n_total"]) == (10, 5, 15)
    assert stats["general_source"] == str(gen)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DataError, match="response"):
        build_mix(AlignConfig(model=M, data_dir=str(data_dir), general_file=str(bad), n_general=1, n_safety=1),
                  tmp_path)


def test_stl_aug_mix_uses_teacher_and_never_heldout(data_dir: Path, tiny_dir: Path, tmp_path: Path) -> None:
    cfg = AlignConfig(model=str(tiny_dir), data_dir=str(data_dir), method="stl-aug", n_general=3, n_safety=3,
                      n_aug=4, teacher_max_new_tokens=4, dtype="fp32")
    rows, stats = build_mix(cfg, tmp_path)
    _, held = xstest_split(cfg.xstest_heldout_frac, cfg.split_seed, data_dir)
    aug_ids = {r["id"] for r in rows if r["kind"] == "aug"}
    assert stats["n_aug"] == len(aug_ids) and aug_ids and not aug_ids & {r.id for r in held}
    assert stats["teacher"]["teacher"] == "self" and (tmp_path / "teacher" / "aug.jsonl").exists()
    cached = (tmp_path / "teacher" / "general.jsonl").read_text()
    rows2, _ = build_mix(cfg, tmp_path)  # second call reads the cache
    assert rows2 == rows and (tmp_path / "teacher" / "general.jsonl").read_text() == cached


def test_teacher_cache_is_shared_across_stages(data_dir: Path, tiny_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Two align stages with the same teacher and settings generate once; the cache location is not in the key."""
    import dataclasses

    import dcr.models
    from dcr.config import config_hash
    from dcr.fingerprint import stage_key

    cache = tmp_path / "teacher-cache"
    cfg = AlignConfig(model=str(tiny_dir), teacher=str(tiny_dir), data_dir=str(data_dir), n_general=3, n_safety=3,
                      teacher_max_new_tokens=4, dtype="fp32", teacher_cache=str(cache))
    rows, stats = build_mix(cfg, tmp_path / "stl")
    assert not (tmp_path / "stl" / "teacher").exists() and stats["teacher"]["cache"].startswith(str(cache))

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(dcr.models, "load_model", no_load)
    other = dataclasses.replace(cfg, method="stl", seed=cfg.seed, lr=cfg.lr * 2)  # another stage, same teacher
    rows2, _ = build_mix(other, tmp_path / "dcr-stl")
    assert [r for r in rows2 if r["kind"] == "general"] == [r for r in rows if r["kind"] == "general"]
    moved = dataclasses.replace(cfg, teacher_cache=str(tmp_path / "elsewhere"))
    assert stage_key(moved) == stage_key(cfg) and config_hash(moved) == config_hash(cfg)
    longer = dataclasses.replace(cfg, teacher_max_new_tokens=5)
    monkeypatch.undo()
    build_mix(longer, tmp_path / "longer")  # other generation settings: a new cache entry, never a stale answer
    assert len([d for d in cache.iterdir() if d.is_dir()]) == 2


# ------------------------------------------------------------ general_source: alpaca-hub (hub faked, never used)


def _fake_alpaca_hub(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """The hub answers with a 5-row tatsu-lab/alpaca whose first row is an AlpacaEval prompt."""
    import datasets

    import dcr.models

    evals = load_alpaca_eval(data_dir)
    table = {"instruction": [evals[0].prompt] + [f"Name fruit number {i}." for i in range(4)],
             "input": ["", "", "red ones", "", ""], "output": ["banned"] + [f"fruit {i}" for i in range(4)]}
    monkeypatch.setattr(dcr.models, "hub_reachable", lambda *a, **k: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, split="train", **k: datasets.Dataset.from_dict(table))


def _no_teacher(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-in teacher: answers every prompt with "teacher says"; returns the groups it was asked to answer."""
    import dcr.align.data

    asked: list[str] = []

    def answers(cfg: AlignConfig, records: dict[str, list[Any]], out_dir: Path) -> dict[str, Any]:
        asked.extend(records)
        rows = {g: [{"id": r.id, "prompt": r.prompt, "response": "teacher says", "kind": g, "source": r.source,
                     "complete": True} for r in recs] for g, recs in records.items()}
        return {**rows, "teacher": {"teacher": cfg.teacher}}

    monkeypatch.setattr(dcr.align.data, "teacher_answers", answers)
    return asked


def test_general_source_alpaca_hub_uses_the_datasets_outputs(data_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_alpaca_hub(monkeypatch, data_dir)
    asked = _no_teacher(monkeypatch)
    cfg = AlignConfig(model=M, data_dir=str(data_dir), general_source="alpaca-hub", n_general=4, n_safety=2)
    rows, stats = build_mix(cfg, tmp_path)
    general = sorted((r["prompt"], r["response"]) for r in rows if r["kind"] == "general")
    assert general == [("Name fruit number 0.", "fruit 0"), ("Name fruit number 1.\nred ones", "fruit 1"),
                       ("Name fruit number 2.", "fruit 2"), ("Name fruit number 3.", "fruit 3")]  # no AlpacaEval
    assert stats["general_source"] == "tatsu-lab/alpaca" and "general_source_fallback" not in stats
    assert asked == [] and stats["teacher"] is None  # the teacher never ran
    with pytest.raises(ConfigError, match="n_general=5 but only 4"):
        build_mix(AlignConfig(model=M, data_dir=str(data_dir), general_source="alpaca-hub", n_general=5), tmp_path)


def test_general_source_alpaca_hub_falls_back_to_the_teacher_loudly(data_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import dcr.models

    monkeypatch.setattr(dcr.models, "hub_reachable", lambda *a, **k: "huggingface.co cannot be reached (test)")
    asked = _no_teacher(monkeypatch)
    cfg = AlignConfig(model=M, data_dir=str(data_dir), general_source="alpaca-hub", n_general=3, n_safety=2)
    with caplog.at_level("WARNING", logger="dcr.align"):
        rows, stats = build_mix(cfg, tmp_path)
    assert asked == ["general"] and [r["response"] for r in rows if r["kind"] == "general"] == ["teacher says"] * 3
    assert stats["general_source"] == "teacher:self"
    assert "cannot be reached (test)" in stats["general_source_fallback"]
    assert any("FALLING BACK to teacher answers" in r.getMessage() for r in caplog.records)


def test_general_source_is_checked() -> None:
    with pytest.raises(ConfigError, match="general_source must be one of teacher, alpaca-hub, got 'gpt4'"):
        AlignConfig(model=M, general_source="gpt4")
    with pytest.raises(ConfigError, match="general_file and general_source alpaca-hub"):
        AlignConfig(model=M, general_source="alpaca-hub", general_file="g.jsonl")


def test_probe_groups_without_heldout_prompts(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """xstest_heldout_frac=0: seemingly_toxic probes come from in-distribution XSTest (logged); STL-aug trains on
    all of them, so its group is empty (logged), never a silent swap."""
    from dcr.align.tracking import probe_sets

    cfg = AlignConfig(model=M, data_dir=str(data_dir), xstest_heldout_frac=0.0, track_n=8)
    in_dist, _ = xstest_split(0.0, 0, data_dir)
    with caplog.at_level("WARNING", logger="dcr.align"):
        probes = probe_sets(cfg, set())
    assert len(probes["seemingly_toxic"]) == 8 and {r.id for r in probes["seemingly_toxic"]} <= {r.id for r in in_dist}
    assert any("no held-out XSTest prompts" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dcr.align"):
        aug = probe_sets(cfg, {normalize_prompt(r.prompt) for r in in_dist})
    assert aug["seemingly_toxic"] == [] and len(aug["toxic"]) == len(aug["normal"]) == 8
    assert any("seemingly_toxic is empty" in r.getMessage() for r in caplog.records)
    held = probe_sets(AlignConfig(model=M, data_dir=str(data_dir), track_n=8), set())["seemingly_toxic"]
    assert {r.id for r in held} <= {r.id for r in xstest_split(0.2, 0, data_dir)[1]}
