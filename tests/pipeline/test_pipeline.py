"""Pipeline logic with fake stages: plan and dedupe, skip on rerun, resume after an interruption, results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dcr.errors import ConfigError, DcrError
from dcr.io import read_json, read_jsonl, write_json, write_jsonl
from dcr.pipeline import collect_results, parse_experiment, plan, run_experiment

ALL = ["base", "stl", "stl-aug", "dcr+stl", "surgical", "scans"]


def exp(**kw: Any) -> Any:
    data = {"name": "t", "models": ["m0"], "methods": ["base", "stl", "dcr+stl"], "seeds": [0],
            "benchmarks": ["xstest", "advbench"], **kw}
    return parse_experiment(data, "test.yaml")


def test_plan_shares_identical_stages(fakes: Any, tmp_path: Path) -> None:
    nodes = plan(exp(methods=ALL, seeds=[0, 1]), tmp_path, fakes.registry())
    by_stage: dict[str, int] = {}
    for n in nodes:
        by_stage[n.stage] = by_stage.get(n.stage, 0) + 1
    # per seed: refine 1, align stl (shared by stl/surgical/scans) + stl-aug + stl on refine = 3, steer 2,
    # evaluate 5 (stl, stl-aug, dcr+stl, surgical, scans); base evaluation is shared across seeds
    assert by_stage == {"refine": 2, "align": 6, "steer": 4, "evaluate": 11}
    assert len({n.id for n in nodes}) == len(nodes) == 23
    stl_align = [n for n in nodes if n.stage == "align" and n.cfg.method == "stl" and n.cfg.model == "m0"
                 and n.cfg.seed == 0]
    assert len(stl_align) == 1
    assert {u["method"] for u in stl_align[0].uses} == {"stl", "surgical", "scans"}
    assert all(n.dir.parent == tmp_path.resolve() / "stages" and n.dir.name == n.id for n in nodes)
    order = [n.stage for n in nodes]
    assert order == sorted(order, key=["refine", "align", "steer", "evaluate"].index)


def test_method_graph_wiring(fakes: Any, tmp_path: Path) -> None:
    nodes = {n.id: n for n in plan(exp(methods=["dcr+stl", "surgical"]), tmp_path, fakes.registry())}
    ev = {u["method"]: n for n in nodes.values() if n.stage == "evaluate" for u in n.uses}
    dcr_align = nodes[ev["dcr+stl"].deps[0]]
    assert dcr_align.stage == "align" and dcr_align.cfg.method == "stl"
    assert nodes[dcr_align.deps[0]].stage == "refine"
    assert dcr_align.cfg.model == str(nodes[dcr_align.deps[0]].dir)
    assert dcr_align.cfg.teacher == "m0"  # same teacher answers as plain STL
    surg = ev["surgical"]
    steer = next(nodes[d] for d in surg.deps if nodes[d].stage == "steer")
    assert surg.cfg.steer == str(steer.dir) and steer.cfg.method == "surgical"
    assert surg.cfg.model == steer.cfg.model == str(nodes[steer.deps[0]].dir)
    assert surg.cfg.tags == {} and surg.cfg.benchmarks == ["xstest", "advbench"]


def test_dcr_alone_evaluates_the_refined_model_of_dcr_stl(fakes: Any, tmp_path: Path) -> None:
    nodes = {n.id: n for n in plan(exp(methods=["base", "dcr", "dcr+stl"]), tmp_path, fakes.registry())}
    refines = [n for n in nodes.values() if n.stage == "refine"]
    assert len(refines) == 1 and {u["method"] for u in refines[0].uses} == {"dcr", "dcr+stl"}  # one refine
    ev = {u["method"]: n for n in nodes.values() if n.stage == "evaluate" for u in n.uses}
    assert ev["dcr"].deps == [refines[0].id] and ev["dcr"].cfg.model == str(refines[0].dir)
    assert nodes[ev["dcr+stl"].deps[0]].stage == "align"


def test_keys_do_not_depend_on_run_dir(fakes: Any, tmp_path: Path) -> None:
    a = [n.id for n in plan(exp(methods=ALL), tmp_path / "a", fakes.registry())]
    b = [n.id for n in plan(exp(methods=ALL), tmp_path / "elsewhere" / "b", fakes.registry())]
    assert a == b


def test_run_collects_tagged_results_and_rerun_skips(fakes: Any, tmp_path: Path) -> None:
    e = exp(methods=["base", "stl", "surgical", "dcr+stl"], seeds=[0, 1], benchmarks=["xstest", "phtest"])
    nodes = run_experiment(e, tmp_path, fakes.registry(), report=False)
    assert all(n.status == "done" for n in nodes)
    assert fakes.bodies == {"refine": 2, "align:stl": 4, "steer:surgical": 2, "evaluate": 7}
    rows = read_jsonl(tmp_path / "results.jsonl")
    tags = {(r["method"], r["seed"], r["model"]) for r in rows}
    assert tags == {(m, s, "m0") for m in ("base", "stl", "surgical", "dcr+stl") for s in (0, 1)}
    missing = [r for r in rows if r["metric"] == "missing"]
    assert {r["benchmark"] for r in missing} == {"phtest"} and len(missing) == 8
    assert all(r["model_path"] for r in rows if r["metric"] != "missing")
    planned = read_json(tmp_path / "plan.json")
    assert [n["status"] for n in planned["nodes"]] == ["done"] * len(nodes)
    assert (tmp_path / "run.log").read_text().count("stage") >= len(nodes)

    fakes.bodies.clear()
    again = run_experiment(e, tmp_path, fakes.registry(), report=False)
    assert fakes.bodies == {}
    assert all(n.status == "skipped" for n in again)
    assert read_jsonl(tmp_path / "results.jsonl") == rows


def test_interrupted_stage_resumes(fakes: Any, tmp_path: Path) -> None:
    e = exp(methods=["stl", "stl-aug", "dcr+stl"])
    fakes.fail_once.add("align:stl-aug")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(e, tmp_path, fakes.registry(), report=False)
    statuses = {n["label"]: n["status"] for n in read_json(tmp_path / "plan.json")["nodes"]}
    assert statuses["align stl-aug (m0, seed 0)"] == "interrupted"
    assert not (tmp_path / "results.jsonl").exists()
    before = dict(fakes.bodies)
    fakes.bodies.clear()
    nodes = run_experiment(e, tmp_path, fakes.registry(), report=False)
    status = {n.label: n.status for n in nodes}
    assert status["refine (m0, seed 0)"] == "skipped"
    assert status["align stl-aug (m0, seed 0)"] == "done"
    assert before == {"refine": 1, "align:stl": 1, "align:stl-aug": 1}
    # nothing finished before the interruption runs again (align:stl here is the one on the refined model)
    assert fakes.bodies == {"align:stl-aug": 1, "align:stl": 1, "evaluate": 3}
    assert sum(before.values()) + sum(fakes.bodies.values()) == len(nodes) + 1
    assert {r["method"] for r in read_jsonl(tmp_path / "results.jsonl")} == {"stl", "stl-aug", "dcr+stl"}


def test_results_hold_only_finished_evaluations(fakes: Any, tmp_path: Path) -> None:
    fakes.fail_evaluate_at = 2  # base finishes, stl's evaluation dies after writing one benchmark
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp(methods=["base", "stl"]), tmp_path, fakes.registry(), report=False)
    rows = read_jsonl(tmp_path / "results.jsonl")
    assert rows and {r["method"] for r in rows} == {"base"}
    run_experiment(exp(methods=["base", "stl"]), tmp_path, fakes.registry(), report=False)
    assert {r["method"] for r in read_jsonl(tmp_path / "results.jsonl")} == {"base", "stl"}


def test_collect_skips_unfinished_evaluations(fakes: Any, tmp_path: Path) -> None:
    nodes = plan(exp(methods=["base", "stl"]), tmp_path, fakes.registry())
    for node, status in zip([n for n in nodes if n.stage == "evaluate"], ("done", "running")):
        node.dir.mkdir(parents=True)
        write_json(node.dir / "manifest.json", {"status": status, "key": "k"})
        write_jsonl(node.dir / "results.jsonl", [{"benchmark": "xstest", "metric": "compliance_rate", "value": 1}])
    assert collect_results(nodes, tmp_path.resolve()) == 1
    assert [r["method"] for r in read_jsonl(tmp_path / "results.jsonl")] == ["base"]


def test_changed_setting_reruns_only_downstream(fakes: Any, tmp_path: Path) -> None:
    run_experiment(exp(methods=["dcr+stl"]), tmp_path, fakes.registry(), report=False)
    fakes.bodies.clear()
    run_experiment(exp(methods=["dcr+stl"], evaluate={"limit": 5}), tmp_path, fakes.registry(), report=False)
    assert fakes.bodies == {"evaluate": 1}
    fakes.bodies.clear()
    run_experiment(exp(methods=["dcr+stl"], sizes={"align_epochs": 1}), tmp_path, fakes.registry(), report=False)
    assert fakes.bodies == {"align:stl": 1, "evaluate": 1}


def test_failure_names_the_stage(fakes: Any, tmp_path: Path) -> None:
    def broken(cfg: Any, out_dir: Path, force: bool = False) -> Path:
        raise DcrError("data missing")

    reg = fakes.registry()
    reg["align"] = (reg["align"][0], broken)
    with pytest.raises(DcrError, match=r"stage 1/2 align stl \(m0, seed 0\) failed .*data missing"):
        run_experiment(exp(methods=["stl"]), tmp_path, reg, report=False)
    assert read_json(tmp_path / "plan.json")["nodes"][0]["status"] == "failed"


def test_sections_and_sizes_reach_stage_configs(fakes: Any, tmp_path: Path) -> None:
    e = exp(methods=["dcr+stl", "surgical", "scans"], dtype="fp32", split_seed=3,
            sizes={"refine_limit": 64, "eval_limit": 30}, refine={"epochs": 1}, steer={"n_directions": 8},
            surgical={"w_f": 0.3}, scans={"multiplier": 3.0},
            models=[{"name": "m0", "refine": {"layer": 5}}])
    nodes = plan(e, tmp_path, fakes.registry())
    refine = next(n for n in nodes if n.stage == "refine")
    assert (refine.cfg.limit, refine.cfg.epochs, refine.cfg.layer, refine.cfg.dtype) == (64, 1, 5, "fp32")
    steers = {n.cfg.method: n.cfg for n in nodes if n.stage == "steer"}
    assert steers["surgical"].w_f == 0.3 and steers["scans"].multiplier == 3.0
    assert steers["scans"].w_f == 0.5 and steers["surgical"].n_directions == 8
    assert all(n.cfg.split_seed == 3 for n in nodes)
    assert all(n.cfg.limit == 30 for n in nodes if n.stage == "evaluate")


@pytest.mark.parametrize("kw, match", [
    ({"methodz": ["stl"]}, "unknown key"),
    ({"methods": ["dpo"]}, "Experiment.methods must be one of .*got 'dpo'"),
    ({"align": {"model": "x"}}, "align.model is set by the pipeline"),
    ({"evaluate": {"split_seed": 1}}, "must agree across stages"),
    ({"sizes": {"eval_limit": 3}, "evaluate": {"limit": 4}}, "both set"),
    ({"sizes": {"epochs": 3}}, "sizes.epochs unknown"),
    ({"seeds": ["a"]}, "Experiment.seeds must be an integer"),
    ({"models": [{"name": "m", "foo": 1}]}, "unknown keys"),
])
def test_bad_experiment_files(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        exp(**kw)


def test_unknown_stage_field_names_the_stage(fakes: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"align stl .*unknown field 'lr_typo'"):
        plan(exp(align={"lr_typo": 1}), tmp_path, fakes.registry())


def test_section_error_names_the_file_and_writes_nothing(fakes: Any, tmp_path: Path) -> None:
    bad = exp(align={"epochs": "three"})
    bad.source = "configs/my-exp.yaml"
    with pytest.raises(ConfigError, match=r"configs/my-exp.yaml \(align section or top level\): field 'epochs'"):
        run_experiment(bad, tmp_path / "run", fakes.registry())
    assert not (tmp_path / "run").exists()


def test_run_dir_is_locked(fakes: Any, tmp_path: Path) -> None:
    from dcr.stage import StageLocked, stage_lock

    (tmp_path / "run").mkdir()
    with stage_lock(tmp_path / "run"), pytest.raises(StageLocked, match="in use by another dcr process"):
        run_experiment(exp(), tmp_path / "run", fakes.registry())


def test_pieces_restored_from_an_archive_are_skipped(fakes: Any, tmp_path: Path) -> None:
    """A long experiment run one method at a time on machines that forget: archive a piece, copy its stages
    back into the run directory, and `dcr run` skips them (same keys), running only the rest. Keys hold the
    absolute paths of upstream stages, so the run directory must be at the same path (else they rerun)."""
    import shutil

    from dcr.report.archive import archive_run

    run = tmp_path / "run"
    run_experiment(exp(methods=["base", "stl"]), run, fakes.registry(), report=False)
    archive_run(run, tmp_path / "piece")
    shutil.rmtree(run)  # the machine (and its weights) is gone
    fakes.bodies.clear()
    shutil.copytree(tmp_path / "piece" / "stages", run / "stages")
    nodes = run_experiment(exp(), run, fakes.registry(), report=False)
    assert fakes.bodies == {"refine": 1, "align:stl": 1, "evaluate": 1}  # DCR + STL's stages only
    status = {n.label: n.status for n in nodes}
    assert status["align stl (m0, seed 0)"] == status["evaluate stl (m0, seed 0)"] == "skipped"
    assert {r["method"] for r in read_jsonl(run / "results.jsonl")} == {"base", "stl", "dcr+stl"}
