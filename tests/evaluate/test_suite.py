"""End-to-end ``evaluate`` on a tiny model: outputs, missing benchmarks, judges, resume and caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dcr.generate
from dcr.cli import app
from dcr.data import load_benchmark, xstest_split
from dcr.errors import DataError
from dcr.evaluate import EvaluateConfig, evaluate, suite
from dcr.evaluate import stage as eval_stage
from dcr.evaluate.judged import prefill, sync_meta
from dcr.io import read_json, read_jsonl, write_jsonl

FIELDS = {"model", "benchmark", "kind", "split", "metric", "value", "n", "judge", "time"}


class FakeGuard:
    """Judge measuring safe responses: everything is safe."""

    name = "guard:fake"
    measures = "safe_response"

    def judge_with_labels(self, prompts: list[str], completions: list[str]) -> list[tuple[str, bool]]:
        return [("safe", True) for _ in prompts]


def _cfg(tiny_dir: Path, data_dir: Path, benchmarks: list[str], **kw) -> EvaluateConfig:
    base = dict(model=str(tiny_dir), data_dir=str(data_dir), benchmarks=benchmarks, limit=4, max_new_tokens=3,
                batch_size=4, dtype="fp32")
    return EvaluateConfig(**{**base, **kw})


def test_outputs_records_splits_and_missing(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_dir, data_dir, ["xstest", "phtest", "malicious-instructions", "arc-easy"], limit=12,
               tags={"method": "base", "seed": "0"})
    out = evaluate(cfg, tmp_path / "ev")
    summary = read_json(out / "metrics.json")
    assert set(summary["benchmarks"]) == {"xstest", "malicious-instructions", "arc-easy"}
    assert "PHTest" in summary["missing"]["phtest"] and "Fix" in summary["missing"]["phtest"]
    assert set(summary["seconds"]) == set(summary["benchmarks"]) and all(s >= 0 for s in summary["seconds"].values())
    xs = summary["benchmarks"]["xstest"]
    assert (xs["n"], xs["limit"], xs["seed"], xs["judge"], xs["model"]) == (12, 12, 0, "keyword", str(tiny_dir))
    recs = read_jsonl(out / "results.jsonl")
    assert all(FIELDS | {"method", "seed"} <= set(r) for r in recs)
    # the XSTest split labels follow dcr.data.xstest_split exactly
    held = {r.id for r in xstest_split(0.2, 0, data_dir)[1]}
    safe = [r for r in load_benchmark("xstest", data_dir, 12, 0) if r.label == "safe"]
    by_split = {r["split"]: r["n"] for r in recs if r["benchmark"] == "xstest" and r["metric"] == "compliance_rate"}
    assert by_split["all"] == len(safe) and by_split.get("held-out", 0) == sum(r.id in held for r in safe)
    assert by_split["all"] == by_split.get("held-out", 0) + by_split["in-distribution"]
    mal = {r["metric"] for r in recs if r["benchmark"] == "malicious-instructions"}
    assert mal == {"refusal_rate", "defense_success_rate", "degenerate_rate"}
    assert {r["metric"] for r in recs if r["benchmark"] == "arc-easy"} == {"accuracy", "acc_norm"}
    assert len(read_jsonl(out / "generations" / "xstest.jsonl")) == 12
    assert len(read_jsonl(next((out / "judgements").glob("xstest__keyword_*.jsonl")))) == 12


def test_interrupted_run_resumes_without_regenerating(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tiny_dir, data_dir, ["oktest"], limit=8)
    out = evaluate(cfg, tmp_path / "ev")
    records = len(read_jsonl(out / "results.jsonl"))  # compliance and degenerate rates
    gen = out / "generations" / "oktest.jsonl"
    rows = read_jsonl(gen)
    write_jsonl(gen, rows[:5])  # as if killed after five prompts (batches of 4: one and a quarter)
    (out / "manifest.json").unlink()
    seen: list[str] = []
    real = dcr.generate.generate_decoded

    def counting(model, tok, prompts, *a, **k):
        seen.extend(prompts)
        return real(model, tok, prompts, *a, **k)

    monkeypatch.setattr(dcr.generate, "generate_decoded", counting)
    evaluate(cfg, out)
    assert sorted(seen) == sorted(r["prompt"] for r in rows[4:])  # the partly written 2nd batch is redone whole
    assert len(read_jsonl(out / "results.jsonl")) == records == 2  # results.jsonl is rewritten, not appended to
    monkeypatch.setattr(eval_stage, "_run_evaluate", lambda *a: pytest.fail("a finished stage re-ran"))
    evaluate(cfg, out)


def test_meta_change_discards_cache_and_prefill_reuses(tmp_path: Path) -> None:
    gen = tmp_path / "generations"
    sync_meta(gen, "a", {"max_new_tokens": 8})
    write_jsonl(gen / "a.jsonl", [{"id": "x-1", "prompt": "p1", "completion": "c1"}])
    recs = [r for r in load_benchmark_like([("x-1", "p1"), ("x-2", "p2")])]
    sync_meta(gen, "b", {"max_new_tokens": 8})
    assert prefill(gen, "b", recs, {"max_new_tokens": 8}) == 1
    assert read_jsonl(gen / "b.jsonl")[0]["completion"] == "c1"
    sync_meta(gen, "c", {"max_new_tokens": 16})
    assert prefill(gen, "c", recs, {"max_new_tokens": 16}) == 0  # other meta: not reused
    (tmp_path / "judgements").mkdir()
    (tmp_path / "judgements" / "a__keyword.jsonl").write_text("{}\n")
    sync_meta(gen, "a", {"max_new_tokens": 32})
    assert not (gen / "a.jsonl").exists() and not (tmp_path / "judgements" / "a__keyword.jsonl").exists()


def load_benchmark_like(pairs: list[tuple[str, str]]):
    from dcr.data import PromptRecord

    return [PromptRecord(i, p, "safe") for i, p in pairs]


def test_guard_judges(tiny_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = suite.get_judge
    monkeypatch.setattr(suite, "get_judge", lambda spec: FakeGuard() if spec.startswith("guard:") else real(spec))
    out = evaluate(_cfg(tiny_dir, data_dir, ["xstest"], judge="guard:x"), tmp_path / "g")
    entry = read_json(out / "metrics.json")["benchmarks"]["xstest"]
    assert [m["metric"] for m in entry["metrics"]] == ["defense_success_rate"]
    assert entry["metrics"][0]["value"] == 1.0 and "compliance not measured" in entry["notes"][0]
    out = evaluate(_cfg(tiny_dir, data_dir, ["xstest"], safety_judge="guard:x"), tmp_path / "k")
    got = {m["metric"]: m["judge"] for m in read_json(out / "metrics.json")["benchmarks"]["xstest"]["metrics"]}
    assert got == {"compliance_rate": "keyword", "refusal_rate": "keyword", "defense_success_rate": "guard:fake",
                   "degenerate_rate": "keyword", "judge_disagreement": "keyword vs guard:fake"}


def test_malformed_data_is_an_error_not_missing(tiny_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "oktest").mkdir(parents=True)
    (tmp_path / "data" / "oktest" / "OKTest.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match="missing column"):
        evaluate(_cfg(tiny_dir, tmp_path / "data", ["oktest"]), tmp_path / "ev")


def test_cli_prints_table_with_missing(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_dir), "--benchmark", "coconot,phtest",
                                   "--limit", "2", "--max-new-tokens", "2", "--out", str(tmp_path / "o"),
                                   "--data-dir", str(data_dir), "--tag", "method=x", "--set", "dtype=fp32"])
    assert res.exit_code == 0, res.output
    assert "MISSING" in res.output and "phtest" in res.output and "compliance_rate" in res.output
    rec = json.loads((tmp_path / "o" / "results.jsonl").read_text().splitlines()[0])
    assert rec["method"] == "x" and rec["benchmark"] == "coconot" and rec["n"] == 2


def test_safety_average_is_the_macro_mean_of_the_five_sets() -> None:
    from dcr.data import SAFETY_SETS

    benches = {n: {"metrics": [{"metric": "defense_success_rate", "split": "all", "value": v, "n": 10,
                                "judge": "keyword"}]} for n, v in zip(SAFETY_SETS, (0.1, 0.2, 0.3, 0.4, 1.0))}
    avg = suite.safety_average(benches)
    assert avg is not None and avg.value == pytest.approx(0.4) and avg.n == 50 and avg.judge == "keyword"
    del benches["cona"]
    assert suite.safety_average(benches) is None


class AlwaysRefuses:
    """A refusal judge that calls everything a full refusal (XSTest rubric label)."""

    name = "always"
    measures = "refusal"

    def judge_with_labels(self, prompts: list[str], completions: list[str]) -> list[tuple[str, bool]]:
        return [("2_full_refusal", True) for _ in prompts]


def test_three_class_breakdown_and_judge_disagreement(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = suite.get_judge
    fakes = {"guard:x": FakeGuard(), "prefix": AlwaysRefuses()}  # specs must parse; the judges behind are fakes
    monkeypatch.setattr(suite, "get_judge", lambda spec: fakes.get(spec) or real(spec))
    cfg = _cfg(tiny_dir, data_dir, ["xstest"], limit=10, safety_judge="guard:x", extra_judges=["prefix"])
    out = evaluate(cfg, tmp_path / "ev")
    entry = read_json(out / "metrics.json")["benchmarks"]["xstest"]
    classes = entry["three_class"]
    assert sum(sum(c.values()) for c in classes.values()) == 10
    allowed = {"full_compliance", "full_refusal", "empty", "degenerate"}  # a tiny random model writes loops
    assert set(classes) <= {"safe", "unsafe"} and all(set(c) <= allowed for c in classes.values())
    got = {m["judge"]: m for m in entry["metrics"] if m["metric"] == "judge_disagreement"}
    refused = {r["id"]: r["value"] for r in read_jsonl(next((out / "judgements").glob("xstest__keyword_*.jsonl")))}
    assert got["keyword vs always"]["value"] == pytest.approx(sum(not v for v in refused.values()) / 10)
    n_unsafe = entry["n_unsafe"]
    assert got["keyword vs guard:fake"]["n"] == n_unsafe  # guard says safe everywhere: disagrees on non-refusals
    recs = [r for r in read_jsonl(out / "results.jsonl") if r["metric"] == "judge_disagreement"]
    assert {r["judge"] for r in recs} == {"keyword vs always", "keyword vs guard:fake"}


def test_heldout_zero_labels_every_xstest_safe_prompt_in_distribution(tiny_dir: Path, data_dir: Path,
                                                                      tmp_path: Path) -> None:
    out = evaluate(_cfg(tiny_dir, data_dir, ["xstest-safe"], limit=6, xstest_heldout_frac=0.0), tmp_path / "ev")
    by_split = {r["split"]: r["n"] for r in read_jsonl(out / "results.jsonl") if r["metric"] == "compliance_rate"}
    assert by_split == {"all": 6, "in-distribution": 6}  # no held-out split at all, not an empty one


def test_unrelated_extra_judge_disagrees_where_it_relabels(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``keyword+unrelated:MODEL`` as an extra judge: its own cached judgements, and a disagreement with keyword
    on exactly the compliances it turned into degenerate (a change of outcome, not of the refusal boolean)."""
    from dcr.judges.unrelated import UnrelatedRule

    monkeypatch.setattr(UnrelatedRule, "unrelated", lambda self, logprob, pmi: True)  # every compliance
    spec = f"keyword+unrelated:{tiny_dir}"
    out = evaluate(_cfg(tiny_dir, data_dir, ["xstest"], limit=10, max_new_tokens=12, extra_judges=[spec]),
                   tmp_path / "ev")
    files = sorted((out / "judgements").glob("xstest__keyword_*.jsonl"))
    assert len(files) == 2 and "unrelated" in files[1].name
    keyword, wrapped = read_jsonl(files[0]), read_jsonl(files[1])
    complied = {r["id"] for r in keyword if r["label"] == "compliance"}
    assert complied  # else the test below could not fail
    assert {r["id"] for r in wrapped if r["label"] == "degenerate"} == complied | {
        r["id"] for r in keyword if r["label"] == "degenerate"}
    got = [m for m in read_json(out / "metrics.json")["benchmarks"]["xstest"]["metrics"]
           if m["metric"] == "judge_disagreement"]
    assert len(got) == 1 and got[0]["judge"].startswith("keyword vs keyword+unrelated:")
    assert got[0]["value"] == pytest.approx(len(complied) / 10)


def test_general_scores_are_reused_only_for_the_same_model_and_dtype(tiny_dir: Path, data_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """scores/ survives a changed stage key (it is resumable); an item's scores must not: another dtype (or model)
    scores every item again instead of reporting the old model's accuracy."""
    import dcr.evaluate.general as general

    scored: list[int] = []
    real = general.score_items
    monkeypatch.setattr(general, "score_items",
                        lambda m, t, items, b, shard=False: scored.append(len(items)) or real(m, t, items, b, shard))
    cfg = _cfg(tiny_dir, data_dir, ["arc-easy"], limit=6)
    out = evaluate(cfg, tmp_path / "ev")
    evaluate(cfg, out, force=True)  # same model and dtype: every score reused
    assert scored == [6]
    evaluate(_cfg(tiny_dir, data_dir, ["arc-easy"], limit=6, dtype="bf16"), out)
    assert scored == [6, 6]
    assert read_json(out / "scores" / "arc-easy.shots0.meta.json")["dtype"] == "torch.bfloat16"
