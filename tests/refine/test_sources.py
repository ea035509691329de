"""Refine's contrastive data as configuration (issue 29): source specs, overlap removal, source-balanced batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dcr.data import PromptRecord, load_benchmark, xstest_split
from dcr.errors import ConfigError, DataError
from dcr.refine.config import RefineConfig
from dcr.refine.data import build_data, build_sourced_data, source_balanced_batches
from dcr.refine.sources import (
    SEEMINGLY,
    SOURCES,
    TOXIC,
    SourceSpec,
    drop_overlap,
    parse_source,
    parse_sources,
    quotas,
    take,
)


@pytest.mark.parametrize(("text", "label", "match"), [
    ("", SEEMINGLY, "empty name"),
    (":20", TOXIC, "empty name"),
    ("hh-rlhf", SEEMINGLY, "'hh-rlhf' is not a seemingly toxic source \\(a toxic source\\)"),
    ("nope", TOXIC, "'nope' is not a toxic source. Fix: use one of hh-rlhf"),
    ("coconot-pref:", SEEMINGLY, "count ''"),
    ("coconot-pref:x", SEEMINGLY, "count 'x'"),
    ("coconot-pref:1", SEEMINGLY, "count '1'"),
    ("coconot-pref:-5", SEEMINGLY, "count '-5'"),
])
def test_a_bad_source_spec_names_the_field_and_the_fix(text: str, label: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        parse_source(text, label, "refine.seemingly_sources")
    assert str(exc.value).startswith("refine.seemingly_sources: ") and "Fix:" in str(exc.value)


def test_source_specs_parse_and_reject_duplicates_and_empty_lists() -> None:
    assert parse_source(" coconot-pref : 300 ", SEEMINGLY, "f") == SourceSpec("coconot-pref", 300)
    assert parse_source("xstest-unsafe", TOXIC, "f") == SourceSpec("xstest-unsafe", None)
    with pytest.raises(ConfigError, match="names a source twice"):
        parse_sources(["hh-rlhf:10", "hh-rlhf"], TOXIC, "toxic_sources")
    with pytest.raises(ConfigError, match="toxic_sources is empty"):
        parse_sources([], TOXIC, "toxic_sources")


def test_config_checks_sources_together_without_limit() -> None:
    with pytest.raises(ConfigError, match="go together"):
        RefineConfig(model="m", layer=1, seemingly_sources=["xstest-safe"])
    with pytest.raises(ConfigError, match="limit \\(64\\) does not apply"):
        RefineConfig(model="m", layer=1, seemingly_sources=["xstest-safe"], toxic_sources=["hh-rlhf:400"], limit=64)
    with pytest.raises(ConfigError, match="balance must be one of class, class-and-source, got 'source'"):
        RefineConfig(model="m", layer=1, balance="source")
    with pytest.raises(ConfigError, match="not a toxic source"):
        RefineConfig(model="m", layer=1, seemingly_sources=["xstest-safe"], toxic_sources=["coconot-pref"])
    RefineConfig(model="m", layer=1, seemingly_sources=["xstest-safe"], toxic_sources=["xstest-unsafe"],
                 balance="class-and-source")


def test_quotas_are_proportional_at_least_one_and_sum_to_k() -> None:
    assert quotas(16, {"a": 200, "b": 300, "c": 100}, "f") == {"a": 5, "b": 8, "c": 3}
    assert quotas(3, {"a": 1000, "b": 2, "c": 2}, "f") == {"a": 1, "b": 1, "c": 1}
    for k in range(3, 40):
        q = quotas(k, {"a": 7, "b": 159, "c": 395}, "f")
        assert sum(q.values()) == k and min(q.values()) >= 1
    with pytest.raises(ConfigError, match="3 sources but only 2 prompts of that class per batch"):
        quotas(2, {"a": 1, "b": 1, "c": 1}, "seemingly_sources")


def test_every_source_balanced_batch_holds_each_source_in_its_share() -> None:
    sources = ["s1"] * 30 + ["s2"] * 10 + ["t1"] * 40 + ["t2"] * 20 + ["t3"] * 20
    labels = [SEEMINGLY] * 40 + [TOXIC] * 80
    batches = source_balanced_batches(labels, sources, 16, 0.5, 25, seed=3)
    share = {"s1": 6, "s2": 2, "t1": 4, "t2": 2, "t3": 2}  # 8 per class: 1 + 6 * 30/40 -> 6, 1 + 6 * 10/40 -> 2 ...
    for b in batches:
        assert len(b) == 16 and len(set(b)) == 16
        assert Counter(sources[i] for i in b) == share
    seen = Counter(i for b in batches[:5] for i in b if sources[i] == "s2")  # 5 batches x 2 = one pass of s2's 10
    assert sorted(seen.values()) == [1] * 10
    assert batches == source_balanced_batches(labels, sources, 16, 0.5, 25, seed=3)
    assert batches != source_balanced_batches(labels, sources, 16, 0.5, 25, seed=4)


def _rec(i: int, prompt: str) -> PromptRecord:
    return PromptRecord(f"r{i}", prompt, "safe")


def test_overlap_with_other_benchmarks_is_dropped_but_not_with_the_sources_own() -> None:
    evals = {"physical-safety-safe": {"how do i stay safe in a storm"}, "oktest": {"how do i kill a python process"}}
    recs = [_rec(0, "How do I stay safe in a storm?"), _rec(1, "How do I kill a Python process."),
            _rec(2, "Fresh prompt"), _rec(3, "fresh  PROMPT!")]
    kept, dropped = drop_overlap(SOURCES["physical-safe"], recs, evals, set())
    assert [r.id for r in kept] == ["r0", "r2"] and dropped == ["r1", "r3"]  # own set kept; OKTest and a repeat not
    seen = {"fresh prompt"}
    assert drop_overlap(SOURCES["coconot-pref"], [_rec(4, "Fresh prompt")], {}, seen)[1] == ["r4"]  # across sources


def test_take_samples_in_order_and_refuses_more_than_there_is() -> None:
    recs = [_rec(i, str(i)) for i in range(10)]
    got = take(SourceSpec("x", 4), recs, seed=0)
    assert len(got) == 4 and got == sorted(got, key=recs.index)
    assert take(SourceSpec("x", 4), recs, 0, front=True) == recs[:4] and take(SourceSpec("x", None), recs, 0) == recs
    with pytest.raises(DataError, match="has 10 usable prompts.*11 were asked for.*at most 10"):
        take(SourceSpec("x", 11), recs, seed=0)


def test_sourced_data_on_the_real_sets(data_dir: Path) -> None:
    data = build_sourced_data(None, ["xstest-safe", "coconot-pref:300", "physical-safe"],
                              ["xstest-unsafe", "coconot-original", "physical-unsafe", "hh-rlhf:100"], 0.2, 0, 0,
                              "both")
    info = data.sources
    assert info is not None
    assert {k: v["n"] for k, v in info.items()} == {"xstest-safe": 200, "coconot-pref": 300, "physical-safe": 100,
                                                    "xstest-unsafe": 160, "coconot-original": 395,
                                                    "physical-unsafe": 100, "hh-rlhf": 100}
    assert info["coconot-pref"]["available"] == 919 and info["coconot-pref"]["dropped_overlap"] == []
    assert len(info["hh-rlhf"]["dropped_overlap"]) >= 10  # HH-RLHF shares prompts with HarmfulQ: never trained on
    harmfulq = {r.prompt for r in load_benchmark("harmfulq")}
    assert not harmfulq & {r.prompt for r in data.toxic}
    unsafe_heldout = {r.id for r in xstest_split(0.2, 0, None, label="unsafe")[1]}
    assert not unsafe_heldout & {r.id for r in data.toxic}  # only the in-distribution split trains
    assert {r.id for r in data.eval_toxic["xstest-unsafe"]} <= unsafe_heldout
    assert data.families() == ["coconot", "hh-rlhf", "physical-safety", "xstest"]
    assert data.train_sources().count("coconot-original") == 395
    split = data.split_json()
    assert split["families"] == data.families() and split["sources"]["physical-safe"]["class"] == "seemingly"


def test_the_papers_data_records_its_overlap_with_evaluation_sets(data_dir: Path) -> None:
    data = build_data(None, 0.2, 0, 0, 2.0, None, "hh")
    assert data.evaluation_overlap and set(data.evaluation_overlap) <= {r.id for r in data.toxic}
    assert "harmfulq" in {b for hits in data.evaluation_overlap.values() for b in hits}
    assert data.split_json()["families"] == ["hh-rlhf", "xstest"]


def test_confound_sets_hold_no_training_prompt_and_cap_each_side(data_dir: Path) -> None:
    from dcr.refine.confound import confound_sets

    data = build_sourced_data(None, ["xstest-safe", "physical-safe:98"], ["xstest-unsafe", "physical-unsafe:97"],
                              0.2, 0, 0, "hh")
    sets = confound_sets(data, None, 0.2, 0, 30, seed=0)
    trained = {r.prompt for r in (*data.seemingly, *data.toxic)}
    assert set(sets) == {"xstest", "coconot", "physical-safety", "hh-rlhf"}
    for family, sides in sets.items():
        for side, recs in sides.items():
            assert not trained & {r.prompt for r in recs}, (family, side)
    assert [len(sets["physical-safety"][s]) for s in ("seemingly", "toxic")] == [2, 3]  # 100 - 98, 100 - 97
    assert len(sets["coconot"]["seemingly"]) == 30 and len(sets["hh-rlhf"]["toxic"]) == 30


def test_confound_scores_tell_source_from_class() -> None:
    """Features that encode only the family: the source probe is perfect and the class probe at chance."""
    import torch

    from dcr.refine.confound import confound_scores

    gen = torch.Generator().manual_seed(0)
    sets: dict = {}
    codes = {}
    for f, family in enumerate(("xstest", "coconot", "physical-safety")):
        sets[family] = {side: [PromptRecord(f"{family}-{side}-{i}", f"{family} {side} {i}", "safe") for i in range(20)]
                        for side in ("seemingly", "toxic")}
        for side in ("seemingly", "toxic"):
            for r in sets[family][side]:
                codes[r.prompt] = torch.nn.functional.one_hot(torch.tensor(f), 8).float() * 5
    sets["hh-rlhf"] = {"toxic": [PromptRecord(f"hh-{i}", f"hh {i}", "unsafe") for i in range(20)]}
    for r in sets["hh-rlhf"]["toxic"]:
        codes[r.prompt] = torch.nn.functional.one_hot(torch.tensor(3), 8).float() * 5
    sets["physical-safety"]["toxic"] = sets["physical-safety"]["toxic"][:3]  # too few: not measurable

    def feats(prompts: list[str]) -> torch.Tensor:
        return torch.stack([codes[p] for p in prompts]) + 0.5 * torch.randn(len(prompts), 8, generator=gen)

    out = confound_scores(sets, feats, seed=0)
    within, across = out["class_within_source"], out["source_within_class"]
    assert within["xstest"]["probe_accuracy"] <= 0.75 and within["xstest"]["chance"] == 0.5
    assert within["physical-safety"]["probe_accuracy"] is None and "not measurable" in within["physical-safety"]["note"]
    assert across["seemingly"]["probe_accuracy"] >= 0.95 and across["seemingly"]["chance"] == round(1 / 3, 4)
    assert across["toxic"]["families"] == ["xstest", "coconot", "physical-safety", "hh-rlhf"]
    assert across["toxic"]["probe_accuracy"] is None  # physical-safety has 3 toxic prompts: the 4-way probe waits
