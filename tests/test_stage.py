"""run_stage: skip when done with the same key, rerun otherwise; manifest contents; results records."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from dcr import results
from dcr.config import field
from dcr.io import read_json, write_json
from dcr.models import pick_dtype
from dcr.stage import MANIFEST, is_done, run_stage, stage_key


@dataclasses.dataclass
class StageCfg:
    model: str = field("tiny", help="model")
    lr: float = field(0.1, help="lr")
    seed: int = field(3, help="seed")


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, out: Path) -> dict[str, Any]:
        self.calls += 1
        (out / "artifact.txt").write_text(f"run {self.calls}")
        return {"loss": 0.5}


def test_skip_when_done_same_key(tmp_path: Path) -> None:
    fn = Counter()
    out, skipped = run_stage("toy", StageCfg(), tmp_path / "s", fn)
    assert (out, skipped, fn.calls) == (tmp_path / "s", False, 1)
    out, skipped = run_stage("toy", StageCfg(), tmp_path / "s", fn)
    assert skipped is True and fn.calls == 1
    _, skipped = run_stage("toy", StageCfg(), tmp_path / "s", fn, force=True)
    assert skipped is False and fn.calls == 2


def test_rerun_on_changed_config_or_upstream(tmp_path: Path) -> None:
    fn = Counter()
    run_stage("toy", StageCfg(), tmp_path / "s", fn)
    _, skipped = run_stage("toy", StageCfg(lr=0.2), tmp_path / "s", fn)
    assert skipped is False and fn.calls == 2
    _, skipped = run_stage("toy", StageCfg(lr=0.2), tmp_path / "s", fn, upstream={"model": "k1"})
    assert skipped is False and fn.calls == 3
    _, skipped = run_stage("toy", StageCfg(lr=0.2), tmp_path / "s", fn, upstream={"model": "k1"})
    assert skipped is True and fn.calls == 3
    assert read_json(tmp_path / "s" / MANIFEST)["key"] == stage_key(StageCfg(lr=0.2), {"model": "k1"})


def test_rerun_when_interrupted(tmp_path: Path) -> None:
    fn = Counter()
    run_stage("toy", StageCfg(), tmp_path / "s", fn)
    manifest = read_json(tmp_path / "s" / MANIFEST)
    write_json(tmp_path / "s" / MANIFEST, {**manifest, "status": "running"})
    assert not is_done(tmp_path / "s", manifest["key"])
    _, skipped = run_stage("toy", StageCfg(), tmp_path / "s", fn)
    assert skipped is False and fn.calls == 2
    (tmp_path / "s" / MANIFEST).write_text('{"status": "do')  # a torn manifest is not "done"
    assert not is_done(tmp_path / "s", manifest["key"])
    _, skipped = run_stage("toy", StageCfg(), tmp_path / "s", fn)
    assert skipped is False and fn.calls == 3


def test_manifest_contents(tmp_path: Path) -> None:
    out, _ = run_stage("toy", StageCfg(), tmp_path / "s", Counter(), upstream={"model": "x"})
    m = read_json(out / MANIFEST)
    assert m["status"] == "done" and m["stage"] == "toy"
    assert m["config"] == {"model": "tiny", "lr": 0.1, "seed": 3}
    assert m["seed"] == 3
    assert m["upstream"] == {"model": "x"}
    assert isinstance(m["wall_time_s"], float) and m["wall_time_s"] >= 0
    assert m["peak_rss_mb"] > 1  # a python process with torch loaded uses far more than 1 MB
    assert {"python", "torch", "transformers"} <= set(m["versions"])
    assert m["summary"] == {"loss": 0.5}
    assert m["host"]["cpus"] >= 1
    assert m["host"]["torch_threads"] == torch.get_num_threads()  # CPU results depend on it (reduction order)
    assert m["host"]["processes"] == 1  # one process, not under a launcher
    assert m["host"]["auto_dtype"] == str(pick_dtype("auto")).removeprefix("torch.")  # bf16 on AMX, else fp32
    log = (out / "stage.log").read_text()
    assert "stage toy started" in log and "finished" in log


def test_dict_config(tmp_path: Path) -> None:
    fn = Counter()
    run_stage("toy", {"a": 1, "seed": 9}, tmp_path / "s", fn)
    assert read_json(tmp_path / "s" / MANIFEST)["seed"] == 9
    _, skipped = run_stage("toy", {"seed": 9, "a": 1}, tmp_path / "s", fn)
    assert skipped is True


def test_a_stage_reused_under_other_source_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from dcr.fingerprint import source_hash

    fn = Counter()
    out, _ = run_stage("toy", {"seed": 1}, tmp_path / "s", fn)
    assert read_json(out / MANIFEST)["versions"]["dcr_source"] == source_hash()
    caplog.clear()
    with caplog.at_level("WARNING", logger="dcr.stage"):
        assert run_stage("toy", {"seed": 1}, out, fn)[1] is True
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # the same source: reused silently
    manifest = read_json(out / MANIFEST)
    write_json(out / MANIFEST, {**manifest, "versions": {**manifest["versions"], "dcr_source": "0" * 16}})
    with caplog.at_level("WARNING", logger="dcr.stage"):
        assert run_stage("toy", {"seed": 1}, out, fn)[1] is True  # still reused: the source is not in the key
    assert "other dcr source (0000000000000000" in caplog.text and source_hash() in caplog.text


def test_results_record_and_load(tmp_path: Path) -> None:
    row = results.record(tmp_path, model="m", metric="compliance_rate", value=0.5, n=10)
    assert row["value"] == 0.5 and "time" in row
    results.record(tmp_path / "results.jsonl", model="m", metric="refusal_rate", value=0.25, n=4)
    rows = results.load(tmp_path)
    assert [r["metric"] for r in rows] == ["compliance_rate", "refusal_rate"]
    assert results.load(tmp_path / "results.jsonl") == rows
    with pytest.raises(TypeError, match="'tags' must be a scalar"):
        results.record(tmp_path, tags={"a": 1})
    assert len(results.load(tmp_path)) == 2


def test_heap_guard_trims_only_on_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    import dcr.stage as stage_mod

    levels = iter([100, 110, 116, 114, 200])
    trims: list[int] = []
    monkeypatch.setattr(stage_mod, "rss_bytes", lambda: next(levels))
    monkeypatch.setattr(stage_mod, "trim_heap", lambda: trims.append(1))
    guard = stage_mod.HeapGuard(slack=1.15)
    for _ in range(5):
        guard.step()
    assert guard.base == 100 and guard.trims == 2 and len(trims) == 2  # 116 and 200 exceed 115


def test_trim_heap_returns_freed_heap() -> None:
    import ctypes

    import dcr.stage as stage_mod

    try:
        assert ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    # many mid-sized blocks (under glibc's mmap threshold) freed except the last: the heap top is pinned, so
    # only malloc_trim's release of free pages in the middle of the heap brings the resident set down
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 256 MB in the heap
    keep = blocks[-1]
    del blocks
    before = stage_mod.rss_bytes()
    stage_mod.trim_heap()
    assert stage_mod.rss_bytes() < before - 100 * 2**20
    assert len(keep) == 64 * 1024


def test_resumed_stage_counts_the_wall_time_of_earlier_attempts(tmp_path: Path) -> None:
    """A killed attempt (manifest left "running") counts from its start to its last log line; a failed one
    by its recorded wall time; a finished stage rerun with force starts a new count."""
    import os
    import time

    out = tmp_path / "s"
    key = stage_key(StageCfg(), None)
    out.mkdir()
    t0 = time.time() - 100
    write_json(out / MANIFEST, {"stage": "toy", "key": key, "status": "running", "started": t0})
    (out / "stage.log").write_text("last line\n")
    os.utime(out / "stage.log", (t0 + 40, t0 + 40))

    calls = {"n": 0}

    def flaky(o: Path) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {}

    with pytest.raises(RuntimeError):
        run_stage("toy", StageCfg(), out, flaky)
    failed = read_json(out / MANIFEST)
    assert failed["status"] == "failed"
    assert [a["status"] for a in failed["attempts"]] == ["killed"]  # left "running": its process is gone
    assert failed["attempts"][0]["wall_time_s"] == pytest.approx(40, abs=0.01)
    assert failed["attempts"][0]["last_log_line"] == "last line" and failed["attempts"][0]["peak_rss_mb"] is None
    run_stage("toy", StageCfg(), out, flaky)
    m = read_json(out / MANIFEST)
    assert [a["status"] for a in m["attempts"]] == ["killed", "failed"]
    assert m["wall_time_total_s"] == pytest.approx(40 + failed["wall_time_s"] + m["wall_time_s"], abs=0.01)
    run_stage("toy", StageCfg(), out, flaky, force=True)
    again = read_json(out / MANIFEST)
    assert again["attempts"] == [] and again["wall_time_total_s"] == again["wall_time_s"]
    other = tmp_path / "o"  # an earlier attempt under another key (changed config) is not this stage's
    other.mkdir()
    write_json(other / MANIFEST, {"key": "different", "status": "running", "started": t0})
    run_stage("toy", StageCfg(), other, flaky)
    assert read_json(other / MANIFEST)["attempts"] == []
