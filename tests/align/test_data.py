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
