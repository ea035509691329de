"""The ``dcr`` command line: verbs listed, pull help, and DcrError -> exit 2 with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcr.cli import app, main
from dcr.errors import ModelError

runner = CliRunner()


def test_help_lists_verbs() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "pull" in result.output
    assert "Contrastive Refinement" in result.output
    registered = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert "pull" in registered
    for name in registered:
        if name:
            assert name in result.output, name


def test_no_args_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "pull" in result.output and "Usage" in result.output


def test_pull_help() -> None:
    result = runner.invoke(app, ["pull", "--help"])
    assert result.exit_code == 0, result.output
    assert "smollm2-135m" in result.output and "--force" in result.output


def test_pull_unknown_raises_model_error() -> None:
    result = runner.invoke(app, ["pull", "nonexistent"])
    assert isinstance(result.exception, ModelError)
    assert "nonexistent" in str(result.exception)


def test_main_maps_dcr_error_to_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["dcr", "pull", "nonexistent"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: unknown embedded model 'nonexistent'" in err and "smollm2-135m" in err
    assert "Traceback" not in err


def test_main_success_exit_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["dcr", "pull", "--help"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    assert "Embedded model" in capsys.readouterr().out


def test_subprocess_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dcr.cli", "pull", "nonexistent"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "unknown embedded model 'nonexistent'" in proc.stderr
    assert "Traceback" not in proc.stderr
