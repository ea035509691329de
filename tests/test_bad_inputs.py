"""Bad input, tried as a new user would: each gives one clear line (file, field or value, and a fix), exit 2,
and leaves no misleading output behind."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcr.cli import main


@dataclass
class Ctx:
    tmp: Path
    tiny: Path
    data: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)


Args = Callable[[Ctx], list[str]]


def _m(c: Ctx) -> list[str]:
    return ["--model", str(c.tiny), "--out", str(c.out)]


def _exp(c: Ctx, **kw: object) -> str:
    body = {"models": [str(c.tiny)], "methods": ["base"], "benchmarks": ["oktest"], "evaluate": {"limit": 2},
            **kw}
    return c.file("exp.yaml", json.dumps(body))


def _small_data(c: Ctx) -> str:
    """A data directory whose XSTest has three prompts of each label."""
    rows = "".join(f"{i},prompt {i},t,{'safe' if i < 3 else 'unsafe'}\n" for i in range(6))
    c.file("small/xstest/xstest_prompts.csv", "id,prompt,type,label\n" + rows)
    return str(c.tmp / "small")


def _run_dir_with_results(c: Ctx, text: str) -> str:
    c.file("run/plan.json", json.dumps({"nodes": []}))
    c.file("run/results.jsonl", text)
    return str(c.tmp / "run")


ROW = json.dumps({"benchmark": "xstest", "metric": "compliance_rate", "value": 1.0, "n": 2, "method": "base",
                  "seed": 0, "model": "m", "split": "all", "kind": "over-refusal", "judge": "keyword"})

CASES: list[tuple[str, Args, str]] = [
    # refine
    ("refine-no-model", lambda c: ["refine", "--out", str(c.out)], "model is empty"),
    ("refine-layer-999", lambda c: ["refine", *_m(c), "--layer", "999"], "pass --layer between 0 and 3"),
    ("refine-fp16", lambda c: ["refine", *_m(c), "--dtype", "fp16"], "dtype 'fp16' is not accepted"),
    ("refine-margin", lambda c: ["refine", *_m(c), "--set", "margin=2"], "margin must be a number in (0, 1)"),
    ("refine-unknown-field", lambda c: ["refine", *_m(c), "--set", "marjin=0.3"], "unknown field 'marjin'"),
    ("refine-set-syntax", lambda c: ["refine", *_m(c), "--set", "margin"], "expected FIELD=VALUE"),
    ("refine-config-missing", lambda c: ["refine", *_m(c), "--config", str(c.tmp / "nope.yaml")],
     "config file not found"),
    ("refine-config-bad-yaml", lambda c: ["refine", *_m(c), "--config", c.file("b.yaml", "refine: [1, 2\n")],
     "not valid YAML"),
    ("refine-config-bad-value", lambda c: ["refine", *_m(c), "--config", c.file("b.yaml", "refine:\n  lr: fast\n")],
     "b.yaml (section 'refine'): field 'lr' must be float"),
    ("refine-model-missing", lambda c: ["refine", "--model", str(c.tmp / "nomodel"), "--out", str(c.out)],
     "no such directory"),
    ("refine-model-not-hf", lambda c: ["refine", "--model", str(c.tmp), "--out", str(c.out)], "no config.json"),
    ("refine-out-is-file", lambda c: ["refine", "--model", str(c.tiny), "--out", c.file("f.txt", "x")],
     "is an existing file"),
    ("refine-out-under-file", lambda c: ["refine", "--model", str(c.tiny), "--out", c.file("g.txt", "x") + "/sub"],
     "cannot create"),
    ("refine-data-dir-missing", lambda c: ["refine", *_m(c), "--data-dir", str(c.tmp / "nodata")],
     "does not exist"),
    ("refine-batch-2", lambda c: ["refine", *_m(c), "--batch-size", "2"], "batch_size must be >= 4"),
    ("refine-heldout-1", lambda c: ["refine", *_m(c), "--set", "xstest_heldout_frac=1"], "xstest_heldout_frac"),
    ("refine-device", lambda c: ["refine", *_m(c), "--device", "gpu"], "device 'gpu' unknown"),
    # align
    ("align-method", lambda c: ["align", *_m(c), "--method", "dpo"], "method must be one of stl, stl-aug"),
    ("align-exclude-from", lambda c: ["align", *_m(c), "--exclude-from", str(c.tmp)], "split.json"),
    ("align-general-file", lambda c: ["align", *_m(c), "--general-file", str(c.tmp / "g.jsonl")],
     "general_file: "),
    ("align-dropout", lambda c: ["align", *_m(c), "--lora-dropout", "1.5"], "lora_dropout must be a number in [0, 1)"),
    ("align-template", lambda c: ["align", *_m(c), "--template", "vicuna"], "got 'vicuna'"),
    # steer
    ("steer-method", lambda c: ["steer", "ablate", *_m(c)], "method must be one of surgical, scans"),
    ("steer-export-scans", lambda c: ["steer", "scans", *_m(c), "--set", "export=true"],
     "only possible for surgical"),
    ("steer-w-f", lambda c: ["steer", "surgical", *_m(c), "--w-f", "2"], "w_f must be a number in [0, 1], got 2.0"),
    # evaluate
    ("evaluate-empty-benchmark", lambda c: ["evaluate", *_m(c), "--benchmark", ""], "benchmarks must be a non-empty"),
    ("evaluate-unknown-benchmark", lambda c: ["evaluate", *_m(c), "--benchmark", "xstets"],
     "benchmark 'xstets' unknown"),
    ("evaluate-empty-judge", lambda c: ["evaluate", *_m(c), "--judge", " "], "judge must be a non-empty string"),
    ("evaluate-unknown-judge", lambda c: ["evaluate", *_m(c), "--judge", "oracle"], "oracle"),
    ("evaluate-out-is-file", lambda c: ["evaluate", "--model", str(c.tiny), "--out", c.file("f.txt", "x")],
     "is an existing file"),
    ("evaluate-steer-missing", lambda c: ["evaluate", *_m(c), "--steer", str(c.tmp / "nosteer")], "nosteer"),
    ("evaluate-tag", lambda c: ["evaluate", *_m(c), "--tag", "method"], "expected KEY=VALUE"),
    ("evaluate-tag-reserved", lambda c: ["evaluate", *_m(c), "--tag", "n=3"], "clash with result fields"),
    ("evaluate-limit-0", lambda c: ["evaluate", *_m(c), "--limit", "0"], "limit must be >= 1"),
    ("evaluate-mmlu-shots", lambda c: ["evaluate", *_m(c), "--mmlu-shots", "9"], "mmlu_shots must be a number in"),
    # judge
    ("judge-missing", lambda c: ["judge", str(c.tmp / "gen.csv")], "file not found"),
    ("judge-not-utf8", lambda c: ["judge", c.file("gen.csv", b"prompt,completion\nhi,caf\xe9\n")], "not UTF-8"),
    ("judge-open-quote", lambda c: ["judge", c.file("gen.csv", 'prompt,completion\nhi,"never closed\nx,y\n')],
     "unterminated quote"),
    ("judge-column", lambda c: ["judge", c.file("gen.csv", "prompt,text\nhi,no\n")], "no column 'completion'"),
    ("judge-extension", lambda c: ["judge", c.file("gen.txt", "x")], "unsupported input extension"),
    ("judge-out-dir", lambda c: ["judge", c.file("gen.csv", "prompt,completion\nhi,no\n"), "--out", str(c.tmp)],
     "is a directory"),
    ("judge-empty", lambda c: ["judge", c.file("gen.csv", "")], "file is empty"),
    ("judge-bad-jsonl", lambda c: ["judge", c.file("gen.jsonl", '{"completion": "a"}\n{oops\n')], "row 2"),
    # probe
    ("probe-same-sets", lambda c: ["probe", "separability", *_m(c), "--set-a", "oktest", "--set-b", "oktest"],
     "the same set"),
    ("probe-small-sets", lambda c: ["probe", "separability", *_m(c), "--data-dir", _small_data(c)],
     "too small: each needs at least 5 prompts"),
    ("refine-empty-heldout", lambda c: ["refine", *_m(c), "--set", "xstest_heldout_frac=0.001", "--set",
                                        "eval_toxic=xstest-unsafe"], "holds out 0 XSTest safe prompt(s)"),
    ("probe-ntk-method", lambda c: ["probe", "ntk", *_m(c), "--method", "exact"], "be one of gram, fd, jvp"),
    ("probe-mds-layers", lambda c: ["probe", "mds", *_m(c), "--layers", "99", "--n", "2"], "out of range"),
    ("probe-track-none", lambda c: ["probe", "ntk-track", "--out", str(c.out)], "checkpoints is empty"),
    ("probe-unknown-set", lambda c: ["probe", "separability", *_m(c), "--set-b", "nosuch"], "nosuch"),
    # run
    ("run-missing", lambda c: ["run", str(c.tmp / "exp.yaml"), "--out", str(c.out)], "config file not found"),
    ("run-unknown-key", lambda c: ["run", _exp(c, modles=["x"]), "--out", str(c.out)], "unknown key(s) ['modles']"),
    ("run-section-value", lambda c: ["run", _exp(c, evaluate={"limit": "many"}), "--out", str(c.out)],
     "exp.yaml (evaluate section or top level): field 'limit' must be int"),
    ("run-second-model", lambda c: ["run", _exp(c, models=[str(c.tiny), str(c.tmp / "gone")]), "--out",
                                    str(c.out)], "gone"),
    ("run-out-is-file", lambda c: ["run", _exp(c), "--out", c.file("f.txt", "x")], "is an existing file"),
    ("run-method", lambda c: ["run", _exp(c, methods=["dpo"]), "--out", str(c.out)], "got 'dpo'"),
    # report
    ("report-missing", lambda c: ["report", str(c.tmp / "norun")], "no results.jsonl or plan.json"),
    ("report-corrupt-middle", lambda c: ["report", _run_dir_with_results(c, f"{ROW}\n{{broken\n{ROW}\n")],
     "results.jsonl, row 2"),
    ("report-torn-only-line", lambda c: ["report", _run_dir_with_results(c, ROW[:20])], "results.jsonl"),
    ("report-merge-without-out", lambda c: ["report", *[_run_dir_with_results(c, f"{ROW}\n")] * 2],
     "needs its own directory"),
    # pull
    ("pull-unknown", lambda c: ["pull", "llama-70b"], "unknown embedded model"),
]


@pytest.mark.parametrize("name,args,phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name: str, args: Args, phrase: str, tmp_path: Path, tiny_dir: Path, data_dir: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = Ctx(tmp_path, tiny_dir, data_dir)
    argv = args(ctx)
    monkeypatch.setattr(sys, "argv", ["dcr", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.err
    err = captured.err.strip().splitlines()[-1] if captured.err.strip() else ""  # progress lines may come first
    assert exc.value.code == 2, f"exit {exc.value.code}: {captured.out}\n{err}"
    assert err.startswith("error: "), err
    assert phrase in err, err
    if ctx.out.exists():  # nothing half-written: at most an honest record of the failure
        left = sorted(p.name for p in ctx.out.iterdir())
        assert left in ([], ["manifest.json", "stage.log"]), left
        if left:
            assert json.loads((ctx.out / "manifest.json").read_text())["status"] == "failed"


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
