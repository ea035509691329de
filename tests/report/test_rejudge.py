"""``dcr report --rejudge``: an archive's completions judged again under today's rules, and what they feed."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

import dcr.judges.keyword as keyword
from dcr.errors import DcrError
from dcr.evaluate import EvaluateConfig, evaluate
from dcr.io import read_json, read_jsonl, write_json
from dcr.report.archive import gzip_file
from dcr.report.rejudge import rejudge_run

BENCHES = ["xstest", "malicious-instructions", "arc-easy"]


def _values(path: Path) -> dict[tuple, tuple]:
    return {(r["benchmark"], r["split"], r["metric"]): (r["value"], r["n"]) for r in read_jsonl(path)
            if r.get("metric") != "missing"}


@pytest.fixture()
def archive(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> Path:
    """A one-evaluation run archived as ``dcr archive`` keeps it: completions gzipped, verdicts, no model."""
    cfg = EvaluateConfig(model=str(tiny_dir), data_dir=str(data_dir), benchmarks=BENCHES, limit=8,
                         max_new_tokens=4, batch_size=8, dtype="fp32", tags={"method": "base", "seed": 0})
    stage = evaluate(cfg, tmp_path / "run" / "stages" / "ev")
    for path in (stage / "generations").glob("*.jsonl"):
        gzip_file(path, path.with_name(path.name + ".gz"))
        path.unlink()
    node = {"id": "ev", "stage": "evaluate", "label": "evaluate base", "dir": "stages/ev", "status": "done",
            "config": read_json(stage / "manifest.json")["config"], "deps": [],
            "uses": [{"method": "base", "seed": 0, "model": "tiny"}]}
    write_json(tmp_path / "run" / "plan.json", {"experiment": "x", "nodes": [node]})
    return tmp_path / "run"


def test_same_rules_reproduce_the_stage_and_new_rules_are_applied(archive: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    stage = archive / "stages" / "ev"
    before = _values(stage / "results.jsonl")
    old_files = sorted(p.name for p in (stage / "judgements").iterdir())
    assert rejudge_run(archive) == {"stages/ev": ["xstest", "malicious-instructions"]}  # arc-easy has no judge
    assert _values(stage / "results.jsonl") == before  # today's rules, same verdicts: every number as measured
    assert [r["benchmark"] for r in read_jsonl(archive / "results.jsonl")] and all(
        r["method"] == "base" for r in read_jsonl(archive / "results.jsonl"))
    # a rule change (every answer a refusal): new verdict files beside the old, and the metrics follow
    monkeypatch.setattr(keyword, "LOGIC_VERSION", keyword.LOGIC_VERSION + 1)
    monkeypatch.setattr(keyword.KeywordJudge, "label", lambda self, p, c: "refusal")
    rejudge_run(archive)
    after = _values(stage / "results.jsonl")
    assert after[("malicious-instructions", "all", "defense_success_rate")][0] == 1.0
    assert after[("xstest", "all", "compliance_rate")][0] == 0.0
    assert after[("arc-easy", "all", "accuracy")] == before[("arc-easy", "all", "accuracy")]  # kept as measured
    assert set(old_files) < {p.name for p in (stage / "judgements").iterdir()}
    assert read_json(stage / "metrics.json")["rejudged"]["benchmarks"] == ["xstest", "malicious-instructions"]
    run_rows = read_jsonl(archive / "results.jsonl")
    assert any(r["benchmark"] == "xstest" and r["metric"] == "compliance_rate" and r["value"] == 0.0
               for r in run_rows)


def test_completions_of_other_prompts_are_refused(archive: Path, tmp_path: Path) -> None:
    gen = archive / "stages" / "ev" / "generations" / "xstest.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(gen, "rt")]
    rows[0]["id"] = "not-an-xstest-id"
    plain = tmp_path / "x.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen.unlink()
    shutil.copy(plain, gen.with_suffix(""))  # an uncompressed copy is read too
    with pytest.raises(DcrError, match="not the prompts its config selects"):
        rejudge_run(archive)
