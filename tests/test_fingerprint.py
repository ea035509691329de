"""Stage keys and data-file fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

from dcr.fingerprint import (
    file_fingerprint,
    files_unchanged,
    model_fingerprint,
    note_read,
    stage_key,
    track_reads,
)
from dcr.io import write_json


def test_model_fingerprint_kinds(tmp_path: Path) -> None:
    assert model_fingerprint(None) is None
    assert model_fingerprint("smollm2-135m") == {"name": "smollm2-135m"}
    plain = tmp_path / "hf"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    first = model_fingerprint(str(plain))
    assert first is not None and first["dir"] == str(plain.resolve())
    (plain / "model.safetensors").write_bytes(b"w")
    assert model_fingerprint(str(plain)) != first  # new weights, new fingerprint
    stage = tmp_path / "stage"
    (stage / "model").mkdir(parents=True)
    write_json(stage / "manifest.json", {"status": "done", "key": "abc"})
    assert model_fingerprint(str(stage / "model")) == model_fingerprint(str(stage)) == {"stage_key": "abc"}
    write_json(stage / "manifest.json", {"status": "failed", "key": "abc"})  # not finished: not a stage key
    assert "stage_key" not in (model_fingerprint(str(stage)) or {})


def test_stage_key_depends_on_data_dir_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DCR_DATA_DIR", str(tmp_path / "a"))
    a = stage_key({"data_dir": None, "x": 1})
    monkeypatch.setenv("DCR_DATA_DIR", str(tmp_path / "b"))
    assert stage_key({"data_dir": None, "x": 1}) != a


def test_reads_and_unchanged_files(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,b\n")
    note_read(f)  # outside track_reads: ignored
    with track_reads() as reads:
        note_read(f)
    assert reads == {str(f.resolve())}
    rec = {str(f): file_fingerprint(f)}
    assert files_unchanged(rec)
    os.utime(f, (1, 1))
    assert files_unchanged(rec)  # touched but same bytes
    f.write_text("a,c\n")
    assert not files_unchanged(rec)
    f.unlink()
    assert not files_unchanged(rec)
