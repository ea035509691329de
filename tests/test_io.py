"""io: atomic writes leave nothing behind on failure; JSONL tolerates (and repairs) a truncated tail."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dcr.errors import DcrError
from dcr.io import append_jsonl, atomic_open, read_json, read_jsonl, write_json, write_jsonl, write_table


def test_atomic_open_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError, match="mid-write"), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("mid-write")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []  # no temp file either


def test_atomic_open_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as fh:
        fh.write("new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_success(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_open(target, "wb") as fh:
        fh.write(b"\x00\x01")
        assert not target.exists()  # only visible once the block finishes
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_json_roundtrip(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": [1, 2], "p": Path("/a")})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2], "p": "/a"}
    rows = [{"id": 1, "t": "é"}, {"id": 2}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    assert read_jsonl(tmp_path / "a.jsonl") == rows
    assert "é" in (tmp_path / "a.jsonl").read_text(encoding="utf-8")


def test_read_jsonl_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}\n{"id": 3, "comp', encoding="utf-8")
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path, skip_bad_tail=False)
    path.write_text('{"id": 1}\n{"id": 2, "comp\n{"id": 3}\n', encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):  # a bad line in the middle is real corruption
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_append_after_truncated_tail(tmp_path: Path) -> None:
    """Appending after a killed writer drops the partial line instead of gluing the new row onto it."""
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "comp', encoding="utf-8")
    append_jsonl(path, [{"id": 3}])
    assert read_jsonl(path, skip_bad_tail=False) == [{"id": 1}, {"id": 3}]
    path.write_text('{"id": 1}\n{"id": 2}', encoding="utf-8")  # complete row, only the newline missing
    append_jsonl(path, [{"id": 3}])
    assert read_jsonl(path, skip_bad_tail=False) == [{"id": 1}, {"id": 2}, {"id": 3}]
    path.write_text('{"id": 1, "x": "' + "y" * 70000, encoding="utf-8")  # a single long partial line
    append_jsonl(path, [{"id": 4}])
    assert read_jsonl(path, skip_bad_tail=False) == [{"id": 4}]
    append_jsonl(tmp_path / "new" / "n.jsonl", [{"a": 1}])
    append_jsonl(tmp_path / "new" / "n.jsonl", [{"a": 2}])
    assert read_jsonl(tmp_path / "new" / "n.jsonl") == [{"a": 1}, {"a": 2}]


def test_write_table_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "extra": "x"}]
    write_table(tmp_path / "t.csv", rows)
    with open(tmp_path / "t.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert got == [{"step": "1", "loss": "0.5", "extra": ""}, {"step": "2", "loss": "0.25", "extra": "x"}]
    write_table(tmp_path / "t.jsonl", rows)
    assert read_jsonl(tmp_path / "t.jsonl") == rows


def test_write_table_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(DcrError, match=r"unsupported output extension '\.txt'.*\.csv or \.jsonl"):
        write_table(tmp_path / "t.txt", [{"a": 1}])
    assert not (tmp_path / "t.txt").exists()


def test_atomic_open_file_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    with atomic_open(tmp_path / "new.txt") as fh:
        fh.write("x")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    (tmp_path / "old.txt").write_text("y")
    os.chmod(tmp_path / "old.txt", 0o640)
    with atomic_open(tmp_path / "old.txt") as fh:
        fh.write("z")
    assert (tmp_path / "old.txt").stat().st_mode & 0o777 == 0o640


def test_jsonl_rows_with_unicode_line_separators(tmp_path: Path) -> None:
    """Rows are written with ensure_ascii=False, so \x85 / \u2028 appear raw; only \n ends a row."""
    rows = [{"id": 1, "completion": "a\u2028b\x85c\x0cd\re"}, {"id": 2, "completion": "ok"}]
    write_jsonl(tmp_path / "w.jsonl", rows)
    assert read_jsonl(tmp_path / "w.jsonl", skip_bad_tail=False) == rows
    append_jsonl(tmp_path / "a.jsonl", rows[:1])
    append_jsonl(tmp_path / "a.jsonl", rows[1:])
    assert read_jsonl(tmp_path / "a.jsonl", skip_bad_tail=False) == rows
    (tmp_path / "crlf.jsonl").write_bytes(b'{"id": 1}\r\n{"id": 2}\r\n')
    assert read_jsonl(tmp_path / "crlf.jsonl") == [{"id": 1}, {"id": 2}]


def test_truncated_tail_followed_by_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "x\n\n', encoding="utf-8")
    assert read_jsonl(path) == [{"id": 1}]


def test_atomic_dir_replaces_only_on_success(tmp_path: Path) -> None:
    from dcr.io import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w.bin").write_text("v1")
    assert (target / "w.bin").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w.bin").write_text("half")
        raise RuntimeError("killed")
    assert (target / "w.bin").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp dir left behind
