"""Honest stage state: failed, interrupted, transient, data changed, code version changed, locked, skipped."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

import dcr
from dcr.config import field
from dcr.fingerprint import note_read
from dcr.io import read_json
from dcr.stage import LOCK, MANIFEST, StageLocked, is_done, run_stage, stage_key, stage_lock


@dataclasses.dataclass
class Cfg:
    model: str = field("tiny", help="model")
    data_dir: str | None = field(None, help="data")
    lr: float = field(0.1, help="lr")


class Body:
    """A stage body that counts its runs and reads ``data/a.txt`` under ``cfg.data_dir`` if given."""

    def __init__(self, data: Path | None = None) -> None:
        self.calls = 0
        self.data = data

    def __call__(self, out: Path) -> dict[str, Any]:
        self.calls += 1
        if self.data is not None:
            note_read(self.data / "a.txt")
            (self.data / "a.txt").read_text()
        (out / "model.bin").write_text("weights")
        return {}


def test_failure_is_recorded_cleaned_and_rerun(tmp_path: Path) -> None:
    out = tmp_path / "s"

    def boom(o: Path) -> None:
        (o / "split.json").write_text("{}")  # an output a rerun would not overwrite before failing again
        (o / "cache").mkdir()
        (o / "cache" / "rows.jsonl").write_text("{}\n")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        run_stage("toy", Cfg(), out, boom, keep=("cache",))
    m = read_json(out / MANIFEST)
    assert (m["status"], m["error_type"], m["error"]) == ("failed", "RuntimeError", "disk on fire")
    assert m["removed"] == ["split.json"]
    assert sorted(p.name for p in out.iterdir()) == ["cache", MANIFEST, "stage.log"]  # the resumable cache stays
    log = (out / "stage.log").read_text()
    assert "Traceback" in log and "RuntimeError: disk on fire" in log
    assert not is_done(out, stage_key(Cfg()))
    body = Body()
    _, skipped = run_stage("toy", Cfg(), out, body)
    assert skipped is False and body.calls == 1 and read_json(out / MANIFEST)["status"] == "done"


def test_keyboard_interrupt_is_interrupted(tmp_path: Path) -> None:
    def stop(o: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("toy", Cfg(), tmp_path / "s", stop)
    assert read_json(tmp_path / "s" / MANIFEST)["status"] == "interrupted"
    assert not (tmp_path / "s" / LOCK).exists()


def test_transient_result_is_not_cached(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def offline(o: Path) -> dict[str, Any]:
        calls.append(1)
        return {"benchmarks": ["xstest"], "transient": {"hf:x/y": "could not reach the hub"}}

    with caplog.at_level(logging.WARNING, logger="dcr.stage"):
        run_stage("toy", Cfg(), tmp_path / "s", offline)
    m = read_json(tmp_path / "s" / MANIFEST)
    assert m["status"] == "incomplete" and m["transient"] == {"hf:x/y": "could not reach the hub"}
    assert "hf:x/y" in caplog.text and "retries" in caplog.text
    _, skipped = run_stage("toy", Cfg(), tmp_path / "s", offline)
    assert skipped is False and len(calls) == 2


def test_changed_data_dir_or_data_file_reruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d, text in ((d1, "one"), (d2, "two")):
        d.mkdir()
        (d / "a.txt").write_text(text)
    out = tmp_path / "s"
    monkeypatch.setenv("DCR_DATA_DIR", str(d1))
    body = Body(d1)
    run_stage("toy", Cfg(), out, body)
    assert str(d1 / "a.txt") in read_json(out / MANIFEST)["data_files"]
    assert run_stage("toy", Cfg(), out, body)[1] is True
    monkeypatch.setenv("DCR_DATA_DIR", str(d2))  # the environment's data directory now points elsewhere
    body.data = d2
    assert run_stage("toy", Cfg(), out, body)[1] is False and body.calls == 2
    assert run_stage("toy", Cfg(), out, body)[1] is True
    (d2 / "a.txt").write_text("TWO")  # same size, new content
    assert run_stage("toy", Cfg(), out, body)[1] is False and body.calls == 3
    os.utime(d2 / "a.txt", (time.time() + 5, time.time() + 5))  # touched, same content: still valid
    assert run_stage("toy", Cfg(), out, body)[1] is True


def test_code_version_is_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = Body()
    run_stage("toy", Cfg(), tmp_path / "s", body)
    assert run_stage("toy", Cfg(), tmp_path / "s", body)[1] is True
    monkeypatch.setattr(dcr, "__version__", "99.0.0")
    assert run_stage("toy", Cfg(), tmp_path / "s", body)[1] is False and body.calls == 2


def test_upstream_stage_key_is_part_of_the_key(tmp_path: Path) -> None:
    up = tmp_path / "up"
    run_stage("up", Cfg(), up, Body())
    (up / "model").mkdir()
    body = Body()
    run_stage("toy", Cfg(), tmp_path / "s", body, upstream={"model": str(up / "model")})
    run_stage("up", Cfg(lr=0.5), up, Body())  # the upstream stage reran with another config
    (up / "model").mkdir(exist_ok=True)
    _, skipped = run_stage("toy", Cfg(), tmp_path / "s", body, upstream={"model": str(up / "model")})
    assert skipped is False and body.calls == 2


def test_skip_is_logged_with_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_stage("toy", Cfg(), tmp_path / "s", Body())
    with caplog.at_level(logging.INFO, logger="dcr.stage"):
        run_stage("toy", Cfg(), tmp_path / "s", Body())
    assert f"skipped (finished, key {stage_key(Cfg())})" in caplog.text


def _hold_lock(out: str, ready: Any, release: Any) -> None:
    with stage_lock(Path(out)):
        ready.set()
        release.wait(30)


def test_second_process_gets_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(out), ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        body = Body()
        with pytest.raises(StageLocked, match=rf"in use by another dcr process \(pid {proc.pid}"):
            run_stage("toy", Cfg(), out, body)
        assert body.calls == 0
    finally:
        release.set()
        proc.join(30)
    assert run_stage("toy", Cfg(), out, Body())[1] is False  # free again once the holder is gone


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    proc = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    (out / LOCK).write_text(f"{proc.pid}\n")  # left behind by a process that died
    body = Body()
    assert run_stage("toy", Cfg(), out, body)[1] is False and body.calls == 1
    assert not (out / LOCK).exists()


def test_out_is_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(dcr.errors.DcrError, match="is an existing file"):
        run_stage("toy", Cfg(), tmp_path / "f", Body())


KILLED_STAGE = """
import logging, sys, time
from pathlib import Path
from dcr.stage import run_stage

def body(out: Path) -> dict:
    (out / "ckpt").write_text("step 3")  # a resumable checkpoint
    logging.getLogger("dcr.toy").info("step 3 of 10 done")
    hold = bytearray(64 << 20)  # 64 MB the heartbeat must see
    hold[::4096] = b"x" * len(hold[::4096])
    time.sleep(120)
    return {}

run_stage("toy", {"lr": 0.1}, Path(sys.argv[1]), body, keep=("ckpt",))
"""


def test_a_killed_stage_is_reported_with_its_last_log_line_and_peak_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import signal
    import subprocess
    import sys

    from dcr.stage import HEARTBEAT

    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_STAGE, str(out)])
    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # the body has logged and the heartbeat has seen the 64 MB
            beat = read_json(out / HEARTBEAT) if (out / HEARTBEAT).is_file() else {}
            if beat.get("peak_rss_mb", 0) > 64 and "step 3 of 10" in (out / "stage.log").read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the stage never reached its sleep")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert read_json(out / MANIFEST)["status"] == "running"  # what a killed process leaves
    seen = []
    with caplog.at_level(logging.WARNING, logger="dcr.stage"):
        run_stage("toy", {"lr": 0.1}, out, lambda o: seen.append((o / "ckpt").read_text()) or {}, keep=("ckpt",))
    assert seen == ["step 3"]  # it resumed from what the killed run kept
    manifest = read_json(out / MANIFEST)
    killed = manifest["attempts"][-1]
    assert manifest["status"] == "done" and killed["status"] == "killed" and killed["pid"] == proc.pid
    assert killed["peak_rss_mb"] > 64 and "step 3 of 10 done" in killed["last_log_line"]
    warning = next(r.getMessage() for r in caplog.records if "was killed" in r.getMessage())
    assert f"pid {proc.pid}" in warning and "step 3 of 10 done" in warning and "ckpt" in warning
    assert not (out / HEARTBEAT).exists()
