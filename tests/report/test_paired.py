"""Paired DCR + STL minus STL comparison: Wilson intervals, the prompt bootstrap, and verdicts read from stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcr.data import load_benchmark
from dcr.errors import DcrError
from dcr.evaluate.judged import slug
from dcr.judges.record import judge_identity
from dcr.report.paired import (
    check_pairable,
    collect,
    paired_bootstrap,
    paired_table,
    seed_prompt_bootstrap,
    summarise_pairs,
    wilson,
)


def test_wilson_known_values() -> None:
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(x != x for x in wilson(0, 0))  # nan without data


def test_bootstrap_resamples_prompts_with_their_seeds() -> None:
    same = {f"p{i}": {0: 1.0, 1: 1.0} for i in range(20)}
    assert paired_bootstrap(same) == (1.0, 1.0, 1.0)
    mixed = {f"p{i}": {0: float(i % 2), 1: float(i % 2)} for i in range(200)}
    mean, lo, hi = paired_bootstrap(mixed)
    assert mean == 0.5 and lo < 0.5 < hi and hi - lo < 0.2


def test_seed_level_interval_counts_disagreeing_seeds() -> None:
    """Seeds with opposite effects: resampling prompts alone sees no uncertainty, resampling seeds does."""
    split = {f"p{i}": {0: 1.0, 1: -1.0} for i in range(100)}
    assert paired_bootstrap(split) == (0.0, 0.0, 0.0)
    lo, hi = seed_prompt_bootstrap(split)
    assert lo == -1.0 and hi == 1.0
    same = {f"p{i}": {0: float(i % 2), 1: float(i % 2)} for i in range(200)}
    lo2, hi2 = seed_prompt_bootstrap(same)
    _, plo, phi = paired_bootstrap(same)
    assert lo2 < 0.5 < hi2 and abs((hi2 - lo2) - (phi - plo)) < 0.05  # agreeing seeds: about the prompt interval


def _stage(run: Path, name: str, method: str, seed: int, data_dir: Path, refused: dict[str, bool],
           bench: str = "harmfulq", labels: dict[str, str] | None = None) -> dict:
    d = run / "stages" / name
    (d / "judgements").mkdir(parents=True)
    labels = labels or {}
    (d / "judgements" / f"{bench}__{slug(judge_identity('keyword'))}.jsonl").write_text(
        "".join(json.dumps({"id": k, "label": labels.get(k, "refusal" if v else "compliance"), "value": v}) + "\n"
                for k, v in refused.items()))
    cfg = {"benchmarks": [bench], "limit": 6, "seed": 0, "data_dir": str(data_dir), "judge": "keyword"}
    return {"id": name, "stage": "evaluate", "dir": f"stages/{name}", "status": "done", "config": cfg,
            "uses": [{"method": method, "seed": seed, "model": "m"}]}


def test_summarise_pairs_by_hand() -> None:
    # seed 0: +1, 0, 0, 0 (mean +0.25); seed 1: 0, 0, -1 (mean -1/3; prompt d lacks seed 1)
    diffs = {"a": {0: 1.0, 1: 0.0}, "b": {0: 0.0, 1: 0.0}, "c": {0: 0.0, 1: -1.0}, "d": {0: 0.0}}
    p = summarise_pairs(diffs, n_boot=500)
    assert p.prompts == 4 and p.mean == pytest.approx(0.0)
    assert p.per_seed == pytest.approx({0: 0.25, 1: -1 / 3})
    assert (p.mean, p.low, p.high) == paired_bootstrap(diffs, 500)
    assert (p.seeds_low, p.seeds_high) == seed_prompt_bootstrap(diffs, 500)
    assert p.interval(min_seeds=2) == (p.seeds_low, p.seeds_high) and p.seeds_counted(2)
    assert p.interval(min_seeds=3) == (p.low, p.high) and not p.seeds_counted(3)  # two seeds: prompts only
    assert p.per_seed_text() == "s0 +0.250, s1 -0.333"
    one = summarise_pairs({"a": {0: 1.0}, "b": {0: 0.0}}, n_boot=200)
    assert one.seeds_low is None and one.interval(1) == (one.low, one.high)
    with pytest.raises(ValueError, match="no .* pair"):
        summarise_pairs({"a": {}})


def test_paired_table_from_stage_verdicts(tmp_path: Path, data_dir: Path) -> None:
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, {i: k < 3 for k, i in enumerate(ids)}),  # 3 of 6 refused
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, {i: k < 2 for k, i in enumerate(ids)})]  # 2 of 6
    plan = {"nodes": nodes}
    data = collect(tmp_path, plan)
    assert list(data) == ["harmfulq unsafe"] and len(data["harmfulq unsafe"]) == 6
    [table] = paired_table(tmp_path, plan)
    row = table.rows[0]
    assert row[0] == "harmfulq unsafe" and row[1] == "6" and row[2] == "1"
    assert row[3].startswith("0.500") and row[4].startswith("0.333") and row[5].startswith("-0.167")


def test_degenerate_answers_are_no_compliance_in_the_paired_outcome(tmp_path: Path, data_dir: Path) -> None:
    ids = [r.id for r in load_benchmark("oktest", data_dir, 6, 0)]
    none = dict.fromkeys(ids, False)
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, none, "oktest"),  # 6 of 6 complied
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, none, "oktest",  # 2 degenerate, 1 no verdict
                    {ids[0]: "degenerate", ids[1]: "degenerate", ids[2]: "unparsed"})]
    [(group, by_prompt)] = collect(tmp_path, {"nodes": nodes}).items()
    assert group == "oktest safe"
    assert sum(b for d in by_prompt.values() for _, b in d.values()) == 3
    assert all(a for d in by_prompt.values() for a, _ in d.values())


def test_rerun_stages_count_and_unfinished_do_not(tmp_path: Path, data_dir: Path) -> None:
    """A rerun marks finished evaluations "skipped" in plan.json: they still pair; failed or pending ones do not."""
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, {i: k < 3 for k, i in enumerate(ids)}),
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, {i: k < 2 for k, i in enumerate(ids)})]
    for status, pairs in (("skipped", 6), ("incomplete", 6), ("failed", 0), ("pending", 0)):
        nodes[0]["status"] = status
        assert len(collect(tmp_path, {"nodes": nodes}).get("harmfulq unsafe", {})) == pairs, status


def test_collect_pairs_across_runs_by_seed_and_prompt(tmp_path: Path, data_dir: Path) -> None:
    """An arm run on its own (method b only) pairs with another run's STL of the same seed, prompt by prompt; a seed
    the other run lacks pairs nothing; evaluations judged or sampled differently are refused, naming the field."""
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    stl_run, arm_run = tmp_path / "stl", tmp_path / "arm"
    stl = [_stage(stl_run, "stl0", "stl", 0, data_dir, {i: k < 3 for k, i in enumerate(ids)}),
           _stage(stl_run, "stl1", "stl", 1, data_dir, dict.fromkeys(ids, True)),
           _stage(stl_run, "dcr0", "dcr+stl", 0, data_dir, dict.fromkeys(ids, False))]  # the other arm: not read
    arm = [_stage(arm_run, "arm0", "dcr+stl", 0, data_dir, {i: k < 2 for k, i in enumerate(ids)})]
    data = collect(stl_run, {"nodes": stl}, b_from=(arm_run, {"nodes": arm}))["harmfulq unsafe"]
    assert len(data) == 6 and all(set(seeds) == {0} for seeds in data.values())  # seed 1 has no arm evaluation
    assert sum(a for d in data.values() for a, _ in d.values()) == 3  # STL refused 3 of 6 (defense success)
    assert sum(b for d in data.values() for _, b in d.values()) == 2  # the arm's own stage, not run 1's dcr0
    arm[0]["config"] = {**arm[0]["config"], "limit": 5}
    with pytest.raises(DcrError, match=r"arm against .*stl, seed 0: evaluations differ in limit \(5 vs 6\)\. Fix: "):
        collect(stl_run, {"nodes": stl}, b_from=(arm_run, {"nodes": arm}))
    check_pairable({"judge": "keyword", "dtype": "auto"}, {"judge": "keyword", "dtype": "float32"})  # host may differ


def _verdict_file(stage: Path, bench: str, judge: str, values: dict[str, bool]) -> None:
    (stage / "judgements" / f"{bench}__{slug(judge_identity(judge) or judge)}.jsonl").write_text(
        "".join(json.dumps({"id": k, "label": "safe" if v else "unsafe", "value": v}) + "\n"
                for k, v in values.items()))


def test_unsafe_prompts_are_read_by_the_safety_judge_when_one_is_set(tmp_path: Path, data_dir: Path) -> None:
    """Table 1 counts a guard's "safe response" as defense success; the paired table must read the same verdicts,
    not the keyword judge's refusals."""
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, dict.fromkeys(ids, True)),  # keyword: all refused
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, dict.fromkeys(ids, True))]
    _verdict_file(tmp_path / "stages" / "stl0", "harmfulq", "guard:g", {i: k < 3 for k, i in enumerate(ids)})
    _verdict_file(tmp_path / "stages" / "dcr0", "harmfulq", "guard:g", {i: k < 5 for k, i in enumerate(ids)})
    plan = {"nodes": nodes}
    assert paired_table(tmp_path, plan)[0].rows[0][5].startswith("+0.000")  # keyword only: no difference
    for n in nodes:
        n["config"]["safety_judge"] = "guard:g"
    [table] = paired_table(tmp_path, plan)
    assert table.rows[0][3].startswith("0.500") and table.rows[0][5].startswith("+0.333")
    assert any("unsafe prompts (defense success) by guard:g" in n for n in table.notes)


def test_a_plan_of_two_models_pairs_each_model_alone(tmp_path: Path, data_dir: Path) -> None:
    from dcr.report.paired import evaluations

    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, dict.fromkeys(ids, True)),
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, dict.fromkeys(ids, False)),  # model m: -1.000
             _stage(tmp_path, "stl0b", "stl", 0, data_dir, dict.fromkeys(ids, False)),
             _stage(tmp_path, "dcr0b", "dcr+stl", 0, data_dir, dict.fromkeys(ids, False))]  # model m2: 0.000
    for n in nodes[2:]:
        n["uses"][0]["model"] = "m2"
    plan = {"nodes": nodes}
    with pytest.raises(ValueError, match="several models"):
        evaluations(plan)
    assert [n["id"] for n in evaluations(plan, "m2").values()] == ["stl0b", "dcr0b"]
    first, second = paired_table(tmp_path, plan)
    assert first.title.endswith("(m)") and first.rows[0][5].startswith("-1.000")
    assert second.title.endswith("(m2)") and second.rows[0][5].startswith("+0.000")


def test_pools_name_the_sets_in_them_and_unjudged_sets_are_named(tmp_path: Path, data_dir: Path) -> None:
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, dict.fromkeys(ids, True)),
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, dict.fromkeys(ids, True))]
    for n in nodes:
        n["config"]["benchmarks"] = ["harmfulq", "advbench"]  # advbench: no verdicts under today's rules
    [table] = paired_table(tmp_path, {"nodes": nodes})
    assert [r[0] for r in table.rows] == ["harmfulq unsafe", "safety, defense success (1 set: harmfulq)"]
    assert any("stl seed 0: advbench" in n and "dcr+stl seed 0: advbench" in n for n in table.notes)


def test_verdicts_judged_under_another_reading_are_not_read(tmp_path: Path, data_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A model judge's verdict file written under an older reading (here: another rubric) is not paired: the
    table names the set unjudged instead of reading values its judge would not give today."""
    from dcr.judges import http
    from dcr.report.paired import unjudged

    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(tmp_path, "stl0", "stl", 0, data_dir, dict.fromkeys(ids, True)),
             _stage(tmp_path, "dcr0", "dcr+stl", 0, data_dir, dict.fromkeys(ids, True))]
    for node in nodes:
        node["config"]["judge"] = "http:http://h:1"
        _verdict_file(tmp_path / "stages" / node["dir"].split("/")[-1], "harmfulq", "http:http://h:1",
                      dict.fromkeys(ids, True))
    assert len(collect(tmp_path, {"nodes": nodes})["harmfulq unsafe"]) == 6
    monkeypatch.setattr(http, "RUBRIC", http.RUBRIC + " Answer with one class.")
    assert "harmfulq unsafe" not in collect(tmp_path, {"nodes": nodes})
    assert unjudged(tmp_path, nodes[0]) == ["harmfulq"]
