"""The shipped experiment files plan against the real stage configs and carry the paper's settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.io import read_json
from dcr.pipeline import load_experiment, plan

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# file -> (hub id, refine layer, refine epochs, align epochs, surgical (w_h, w_f), scans multiplier), A.2-A.4
PAPER = {
    "paper-qwen2.5-1.5b.yaml": ("Qwen/Qwen2.5-1.5B", 13, 3, 3, (0.1, 0.5), 1.0),
    "paper-qwen2.5-7b.yaml": ("Qwen/Qwen2.5-7B", 13, 2, 4, (0.1, 0.1), 3.0),
    "paper-llama3-8b.yaml": ("meta-llama/Meta-Llama-3-8B", 15, 3, 4, (0.5, 0.3), 0.1),
}
# the paper-exact variants: the same settings, nothing held out, Alpaca's own answers
PAPER |= {name.replace("paper-", "paper-exact-"): v for name, v in PAPER.items()}


def by_stage(nodes: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in nodes:
        out.setdefault(n.stage if n.stage != "steer" else f"steer:{n.cfg.method}", []).append(n.cfg)
    return out


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs(name: str, tmp_path: Path) -> None:
    hub, layer, r_epochs, a_epochs, (w_h, w_f), mult = PAPER[name]
    exp = load_experiment(CONFIGS / name)
    assert [m.name for m in exp.models] == [hub]
    assert set(exp.methods) == {"base", "stl", "stl-aug", "surgical", "scans", "dcr+stl"}
    cfgs = by_stage(plan(exp, tmp_path))
    (refine,) = cfgs["refine"]
    assert (refine.layer, refine.epochs, refine.batch_size, refine.lr) == (layer, r_epochs, 32, 1e-4)
    assert (refine.margin, refine.gamma, refine.nll_weight, refine.toxic_ratio) == (0.25, 16.0, 0.001, 2.0)
    for align in cfgs["align"]:
        assert (align.epochs, align.lr, align.micro_batch, align.grad_accum) == (a_epochs, 1e-4, 4, 32)
        assert (align.lora_r, align.lora_alpha, align.lora_dropout, align.warmup_ratio) == (8, 32, 0.05, 0.03)
        assert (align.n_general, align.n_safety) == (20000, 1000)
    (surgical,) = cfgs["steer:surgical"]
    assert (surgical.w_h, surgical.w_f) == (w_h, w_f)
    assert cfgs["steer:scans"][0].multiplier == mult
    for ev in cfgs["evaluate"]:
        assert ev.safety_judge == "guard:meta-llama/Llama-Guard-3-8B" and ev.judge == "keyword"
        for bench in ("xstest", "coconot", "or-bench", "oktest", "phtest", "malicious-instructions", "cona",
                      "controversial", "harmfulq", "advbench", "alpaca-eval"):
            assert bench in ev.benchmarks
        assert (ev.reference, ev.annotator) == ("stl", None)  # quality: not measured until an annotator is given
    exact = name.startswith("paper-exact-")
    every = [c for stage in cfgs.values() for c in stage if hasattr(c, "xstest_heldout_frac")]
    assert {c.xstest_heldout_frac for c in every} == {0.0 if exact else 0.2}
    assert {a.general_source for a in cfgs["align"]} == {"alpaca-hub" if exact else "teacher"}
    assert {a.teacher for a in cfgs["align"]} == {hub} and all(a.n_aug is None for a in cfgs["align"])


@pytest.mark.parametrize("name", sorted(n for n in PAPER if n.startswith("paper-exact-")))
def test_paper_exact_differs_from_its_heldout_variant_only_as_its_header_says(name: str) -> None:
    exact = load_experiment(CONFIGS / name)
    held = load_experiment(CONFIGS / name.replace("paper-exact-", "paper-"))
    assert exact.common == {**held.common, "xstest_heldout_frac": 0}
    assert exact.sections["align"] == {**held.sections["align"], "general_source": "alpaca-hub"}
    assert {k: v for k, v in exact.sections.items() if k != "align"} == \
        {k: v for k, v in held.sections.items() if k != "align"}
    assert (exact.models, exact.methods, exact.seeds, exact.benchmarks) == \
        (held.models, held.methods, held.seeds, held.benchmarks)
    header = (CONFIGS / name).read_text().split("\nname:")[0]
    assert "xstest_heldout_frac: 0" in header and "general_source: alpaca-hub" in header
    assert "250:500" in header and "in-distribution" in header


def test_an_annotator_makes_the_stl_model_the_quality_reference(tmp_path: Path) -> None:
    exp = load_experiment(CONFIGS / "paper-exact-qwen2.5-1.5b.yaml")
    exp.sections["evaluate"]["annotator"] = "http:https://example.invalid/v1#gpt-4o-mini"
    nodes = plan(exp, tmp_path)
    (stl,) = [n for n in nodes if n.stage == "align" and n.cfg.method == "stl" and not n.deps]
    evals = [n for n in nodes if n.stage == "evaluate"]
    assert len(evals) == 6 and all(n.cfg.reference == str(stl.dir) and stl.id in n.deps for n in evals)


def test_quickstart_plans_stl_and_dcr(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(CONFIGS / "quickstart.yaml"), "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    planned = read_json(tmp_path / "plan.json")
    assert planned["models"] == ["smollm2-135m"]
    assert {u["method"] for n in planned["nodes"] for u in n["uses"]} == {"base", "stl", "dcr+stl"}
    assert [n["stage"] for n in planned["nodes"]] == ["refine", "align", "align", "evaluate", "evaluate", "evaluate"]
    assert not (tmp_path / "stages").exists()  # a dry run runs nothing
    assert "less safe than STL" in planned["reference"]  # the report's first paragraph (issue 28)


def test_the_reference_note_is_a_string_and_opens_the_report(tmp_path: Path) -> None:
    from dcr.errors import ConfigError
    from dcr.io import write_json
    from dcr.pipeline import parse_experiment
    from dcr.report.build import build
    from dcr.report.render import Para

    with pytest.raises(ConfigError, match="Experiment.reference must be a string"):
        parse_experiment({"models": ["m"], "reference": ["not", "a", "note"]}, "x.yaml")
    assert parse_experiment({"models": ["m"], "reference": "  see results/x  "}, "x.yaml").reference == "see results/x"
    write_json(tmp_path / "plan.json", {"experiment": "x", "nodes": [], "reference": "see results/x"})
    blocks = build(tmp_path)
    assert isinstance(blocks[2], Para) and blocks[2].text.endswith("see results/x")


def test_quickstart_baselines_reuses_quickstart_stages(tmp_path: Path) -> None:
    runner = CliRunner()
    quick, base = tmp_path / "quick", tmp_path / "baselines"
    for cfg, out in (("quickstart.yaml", quick), ("quickstart-baselines.yaml", base)):
        result = runner.invoke(app, ["run", str(CONFIGS / cfg), "--out", str(out), "--dry-run"])
        assert result.exit_code == 0, result.output
    quick_dirs = {Path(n["dir"]).name for n in read_json(quick / "plan.json")["nodes"]}
    nodes = read_json(base / "plan.json")["nodes"]
    base_dirs = {Path(n["dir"]).name for n in nodes}
    assert quick_dirs < base_dirs  # every quickstart stage is shared, none re-keyed
    assert sorted(n["stage"] for n in nodes if Path(n["dir"]).name not in quick_dirs) == [
        "evaluate", "evaluate", "steer", "steer"]


@pytest.mark.parametrize("name,seeds", [("repro-smollm2.yaml", [0, 1, 2]), ("repro-gemma3-270m.yaml", [0, 1])])
def test_repro_configs_plan_every_seed_on_one_evaluation_subsample(name: str, seeds: list[int],
                                                                   tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(CONFIGS / name), "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    planned = read_json(tmp_path / "plan.json")
    assert planned["seeds"] == seeds
    evals = [n for n in planned["nodes"] if n["stage"] == "evaluate"]
    assert len(evals) == 1 + 2 * len(seeds)  # base once, STL and DCR + STL per seed
    assert {(n["config"]["seed"], n["config"]["limit"]) for n in evals} == {(0, 500)}  # the same prompts for all
    refine = [n["config"] for n in planned["nodes"] if n["stage"] == "refine"]
    assert {(c["limit"], c["toxic_ratio"], c["epochs"]) for c in refine} == {(None, 2.0, 3)}  # 200 : 400, A.2
    align = [n["config"] for n in planned["nodes"] if n["stage"] == "align"]
    assert {a["track_n"] for a in align} == {50}


def test_run_set_overrides_and_a_shared_stages_dir(tmp_path: Path) -> None:
    """An ablation: `--set refine.layer=8` in its own run directory, reusing another run's stages."""
    shared = tmp_path / "main" / "stages"
    base = ["run", str(CONFIGS / "quickstart.yaml"), "--dry-run", "--set", f"stages_dir={shared}"]
    main = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "main")])
    abl = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "abl"), "--set", "refine.layer=8",
                                   "--set", "seeds=[0]"])
    assert main.exit_code == 0 and abl.exit_code == 0, main.output + abl.output
    a, b = read_json(tmp_path / "main" / "plan.json"), read_json(tmp_path / "abl" / "plan.json")
    for run, planned in ((tmp_path / "main", a), (tmp_path / "abl", b)):
        assert all((run / n["dir"]).parent == shared for n in planned["nodes"])  # relative inside RUN_DIR
    assert [n["config"]["layer"] for n in b["nodes"] if n["stage"] == "refine"] == [8]
    same = {n["id"] for n in a["nodes"]} & {n["id"] for n in b["nodes"]}
    assert {i.split("-")[0] for i in same} == {"align", "evaluate"}  # STL and base are shared, DCR is not
    bad = CliRunner().invoke(app, ["run", str(CONFIGS / "quickstart.yaml"), "--out", str(tmp_path / "x"),
                                   "--dry-run", "--set", "refine"])
    assert bad.exit_code != 0 and "KEY=VALUE" in str(bad.exception or bad.output)


def test_repro_ablation_variants_share_stl_and_evaluation(tmp_path: Path) -> None:
    """configs/repro-ablations.sh: every variant plans the main run's seed-0 STL and evaluation stages and its
    own refine stage, so only the DCR stages of a variant run."""
    import re

    script = (CONFIGS / "repro-ablations.sh").read_text()
    variants = dict(re.findall(r'^\s+\[(\w+)\]="([^"]*)"', script, re.M))
    assert set(variants) == {"reference", "layer14", "layer8", "layer22", "epochs1", "epochs5", "ratio1", "ratio4",
                             "lora"}
    shared, refine_ids = tmp_path / "stages", set()
    for name, setting in variants.items():
        args = ["run", str(CONFIGS / "repro-smollm2.yaml"), "--dry-run", "--out", str(tmp_path / name),
                "--set", "seeds=[0]", "--set", f"stages_dir={shared}", *(["--set", setting] if setting else [])]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        nodes = read_json(tmp_path / name / "plan.json")["nodes"]
        owners = {(n["stage"], n["uses"][0]["method"]): n["id"] for n in nodes}
        assert owners[("align", "stl")] == "align-71b77ef162026d8b"  # seed 0 of the main run
        assert owners[("evaluate", "stl")] == "evaluate-5616ccede520bf31"
        assert owners[("evaluate", "base")] == "evaluate-a8fc4e4c7739dfcb"
        refine_ids.add(owners[("refine", "dcr+stl")])
        if name == "reference":  # the main run's seed 0 with its layer pinned: results/repro-smollm2/seed0 ran
            # refine-cdee75cdd195a305 with layer None (= 15 then); `layer: 15` trains the same layer under a new id
            assert owners[("refine", "dcr+stl")] == "refine-85ae1bc790ce7cad"
    assert len(refine_ids) == len(variants)  # each variant trains its own refinement
    assert 'SUFFIX="-s$SEED"' in script and '--set "seeds=[$SEED]"' in script
    args = ["run", str(CONFIGS / "repro-smollm2.yaml"), "--dry-run", "--out", str(tmp_path / "layer22-s1"), "--set",
            "seeds=[1]", "--set", f"stages_dir={shared}", "--set", variants["layer22"]]  # SEED=1 of the script
    assert CliRunner().invoke(app, args).exit_code == 0
    nodes = read_json(tmp_path / "layer22-s1" / "plan.json")["nodes"]
    owners = {(n["stage"], n["uses"][0]["method"]): n["id"] for n in nodes}
    assert owners[("align", "stl")] == "align-a16f285b0d53ea24"  # seed 1 of the main run (results/repro-smollm2)
    assert owners[("evaluate", "stl")] == "evaluate-0d673d8236042aca"


@pytest.mark.parametrize("name", ["repro-qwen2.5-coder-1.5b.yaml", "repro-smollm2.yaml", "quickstart.yaml"])
def test_every_planned_config_survives_the_json_trip_to_a_stage_process(name: str, tmp_path: Path) -> None:
    from dcr.pipeline.child import config_json
    from dcr.pipeline.planner import default_registry

    registry = default_registry()
    for node in plan(load_experiment(CONFIGS / name), tmp_path):
        assert registry[node.stage][0](**config_json(node.cfg)) == node.cfg, node.label


@pytest.mark.parametrize("script", ["repro-seed.sh", "smollm2-arms.sh", "refine-sources.sh"])
@pytest.mark.parametrize("seed", [None, "", "x"])
def test_per_seed_scripts_need_an_explicit_seed(tmp_path: Path, script: str, seed: str | None) -> None:
    """Each of these archives with --force into results/...-sSEED: a forgotten SEED must not rerun seed 0 over its
    committed archive. Without a seed number the script stops with exit 2 before running anything."""
    env = {k: v for k, v in os.environ.items() if k != "SEED"} | {"DCR": "false"}
    if seed is not None:
        env["SEED"] = seed
    done = subprocess.run(["bash", str(CONFIGS / script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and f"{script}: SEED={seed or ''} is not a seed number" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def _fake_dcr(tmp_path: Path, then: str = "") -> tuple[Path, Path]:
    """A stand-in `dcr` that appends its arguments to calls.txt, one call per line, then runs the shell ``then``;
    returns (the executable, calls.txt)."""
    calls, fake = tmp_path / "calls.txt", tmp_path / "fake-dcr"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n{then}')
    fake.chmod(0o755)
    return fake, calls


def _arms(tmp_path: Path, script: str = "smollm2-arms.sh", args: tuple[str, ...] = (),
          **env_vars: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run configs/SCRIPT with a stand-in `dcr` (:func:`_fake_dcr`); return the result and its calls."""
    fake, calls = _fake_dcr(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SEED", "ARMS", "TAG", "DTYPE", "NAME", "EXP", "EVAL_PROCS")} | {"DCR": str(fake), **env_vars}
    done = subprocess.run(["bash", str(CONFIGS / script), *args], cwd=work, env=env, capture_output=True,
                          text=True)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_smollm2_arms_one_arm_under_a_tag_never_touches_the_seed_s_archive(tmp_path: Path) -> None:
    """ARMS=b TAG=-bf16: only the 5 % arm runs, and every run, stage and archive directory carries the tag, so a
    rerun of seed 0 cannot replace results/ablation-stl-mix/smollm2-5-1216-s0 (archive --force)."""
    done, calls = _arms(tmp_path, SEED="0", ARMS="b", TAG="-bf16")
    assert done.returncode == 0, done.stderr
    assert calls and not any("smollm2-67" in c or "smollm2-src" in c for c in calls)  # arm A did not run
    assert "archive runs/smollm2-5-1216-s0-bf16 results/ablation-stl-mix/smollm2-5-1216-s0-bf16 --force" in calls
    runs = [c for c in calls if c.startswith("run ")]
    assert len(runs) == 2 and all("stages_dir=runs/smollm2-5-s0-bf16/stages" in c and "seeds=[0]" in c for c in runs)


@pytest.mark.parametrize(("var", "value"), [("ARMS", "c"), ("ARMS", "ba"), ("TAG", "bf16"), ("TAG", "-a/b")])
def test_smollm2_arms_rejects_a_bad_arms_or_tag(tmp_path: Path, var: str, value: str) -> None:
    done, calls = _arms(tmp_path, SEED="0", **{var: value})
    assert done.returncode == 2 and f"smollm2-arms.sh: {var}={value} is not" in done.stderr and "Fix:" in done.stderr
    assert calls == [] and not any((tmp_path / "work").iterdir())


def test_refine_sources_matched_arm_alone_pins_the_dtype(tmp_path: Path) -> None:
    """ARMS=matched DTYPE=fp32: one run, source-matched DCR + STL only, in fp32, archived under the arm's own name;
    no paper run (its STL and DCR + STL are archived already) and no confound probes (they need the STL model)."""
    done, calls = _arms(tmp_path, "refine-sources.sh", SEED="1", NAME="qwen0.5b", ARMS="matched", DTYPE="fp32",
                        EXP="configs/repro-qwen2.5-coder-0.5b.yaml", EVAL_PROCS="2",
                        args=("--set", "refine.save_every=15"))
    assert done.returncode == 0, done.stderr
    [run, archive] = calls
    assert run.startswith("run configs/repro-qwen2.5-coder-0.5b.yaml --out runs/sources-qwen0.5b-s1 ")
    assert "methods=[dcr+stl]" in run and "dtype=fp32" in run and "refine.balance=class-and-source" in run
    assert "evaluate_processes=2" in run and "--set refine.save_every=15" in run  # the script's arguments, as given
    assert archive == "archive runs/sources-qwen0.5b-s1 results/refine-sources/qwen0.5b-s1 --force"


def test_refine_sources_both_arms_by_default(tmp_path: Path) -> None:
    done, calls = _arms(tmp_path, "refine-sources.sh", SEED="0")
    runs = [c for c in calls if c.startswith("run ")]
    outs = [r.split("--out ")[1].split()[0] for r in runs]
    assert outs == ["runs/sources-smollm2-paper-s0", "runs/sources-smollm2-s0"]
    assert all("methods=[stl, dcr+stl]" in r and "dtype=" not in r and "evaluate_processes" not in r for r in runs)
    assert "archive runs/sources-smollm2-paper-s0 results/refine-sources/smollm2-paper-s0 --force" in calls
    assert "confound-probes.sh" in done.stderr  # went on to the confound probes (not there from this cwd)


@pytest.mark.parametrize(("var", "value"), [("ARMS", "paper"), ("DTYPE", "fp16"), ("EVAL_PROCS", "0"),
                                            ("EVAL_PROCS", "two")])
def test_refine_sources_rejects_a_bad_arms_or_dtype(tmp_path: Path, var: str, value: str) -> None:
    done, calls = _arms(tmp_path, "refine-sources.sh", SEED="0", **{var: value})
    assert done.returncode == 2 and f"refine-sources.sh: {var}={value} is not" in done.stderr and "Fix:" in done.stderr
    assert calls == [] and not any((tmp_path / "work").iterdir())


def test_confound_probes_skip_an_arm_given_as_dash(tmp_path: Path) -> None:
    """`-` as PAPER_RUN: only the matched arm's STL and DCR + STL models are probed (a seed whose paper arm runs in
    another session); each probe's outputs are copied to DEST."""
    run = tmp_path / "matched"
    nodes = [{"stage": "refine", "dir": "stages/r", "uses": [{"method": "dcr+stl", "seed": 2}]},
             {"stage": "align", "dir": "stages/a", "uses": [{"method": "stl", "seed": 2}]},
             {"stage": "align", "dir": "stages/b", "uses": [{"method": "dcr+stl", "seed": 2}]}]
    run.mkdir()
    (run / "plan.json").write_text(json.dumps({"nodes": nodes}))
    fake, calls = _fake_dcr(tmp_path, 'out="${@: -1}"\nmkdir -p "$out"\n'
                                      'touch "$out/metrics.json" "$out/results.jsonl" "$out/manifest.json"\n')
    done = subprocess.run(["bash", str(CONFIGS / "confound-probes.sh"), "-", str(run), "2", str(tmp_path / "dest")],
                          cwd=tmp_path, env=os.environ | {"DCR": str(fake)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and all(f"--refine-stage {run}/stages/r" in c for c in lines)
    assert f"--model {run}/stages/a" in lines[0] and f"--model {run}/stages/b" in lines[1]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["matched-dcr-stl", "matched-stl"]
