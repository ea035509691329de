"""``dcr data list`` and ``dcr data verify`` through the CLI (exit status, one-line errors)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.datadir import VENDORED

runner = CliRunner()


def test_data_verify_passes_on_the_vendored_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    res = runner.invoke(app, ["data", "verify"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("OK: ") and str(VENDORED) in res.output


def test_data_verify_fails_with_exit_1_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(VENDORED, root)
    (root / "xstest" / "xstest_prompts.csv").write_text("id,prompt\n")
    res = runner.invoke(app, ["data", "verify", "--data-dir", str(root)])
    assert res.exit_code == 1
    assert "FAILED xstest/xstest_prompts.csv: sha256 differs" in res.output and "FAILED:" in res.output


def test_data_list_json_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    res = runner.invoke(app, ["data", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert {r["chosen_by"] for r in rows} == {"vendored"}
    xs = next(r for r in rows if r["name"] == "xstest-safe")
    assert (xs["rows"], xs["kind"], xs["licence"], xs["source"]) == (250, "over-refusal", "CC-BY-4.0",
                                                                    "xstest/xstest_prompts.csv")
    table = runner.invoke(app, ["data", "list"])
    assert table.exit_code == 0 and "the copy vendored with dcr" in table.output and "OKTest states no licence" in \
        table.output


def test_data_commands_on_a_missing_directory_exit_2_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from dcr.cli import main

    for verb in ("list", "verify"):
        monkeypatch.setattr(sys, "argv", ["dcr", "data", verb, "--data-dir", str(tmp_path / "nope")])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: data directory {tmp_path / 'nope'} (from --data-dir) does not exist")
