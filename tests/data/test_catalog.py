"""The vendored data: the manifest check (``verify``), the set listing (``list_sets``) and how the package ships it."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from dcr.data.catalog import LICENCES, data_files, list_sets, read_manifest, verify
from dcr.datadir import MANIFEST, VENDORED
from dcr.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def test_the_vendored_copy_matches_its_manifest() -> None:
    result = verify(VENDORED)
    assert result.passed, result.bad
    assert len(result.ok) == len(read_manifest()) >= 150 and result.unlisted == []
    assert set(read_manifest()) == set(data_files(VENDORED))  # every vendored file is in the manifest


def test_every_vendored_directory_has_provenance_and_a_licence() -> None:
    dirs = sorted(p.name for p in VENDORED.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert dirs == sorted(LICENCES)
    for d in dirs:
        assert (VENDORED / d / "PROVENANCE.md").is_file(), d
    readme = (VENDORED / "README.md").read_text(encoding="utf-8")
    assert "CC-BY-NC-4.0" in readme and "OKTest (`oktest/`) states no licence" in readme


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(VENDORED, root)
    return root


def test_verify_names_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "oktest" / "OKTest.csv").write_bytes((root / "oktest" / "OKTest.csv").read_bytes() + b"\n")
    (root / "piqa" / "valid-labels.lst").unlink()
    (root / "notes.txt").write_text("mine")
    result = verify(root)
    assert not result.passed
    assert sorted(result.bad) == [("oktest/OKTest.csv", "sha256 differs"), ("piqa/valid-labels.lst", "missing")]
    assert result.unlisted == ["notes.txt"] and len(result.ok) == len(read_manifest()) - 2


@pytest.mark.parametrize("line", ["abc  xstest/x.csv", "a" * 64 + " xstest/x.csv", "a" * 64 + "  ../etc/passwd",
                                  "A" * 64 + "  x.csv", "a" * 64 + "  /abs.csv"])
def test_a_malformed_manifest_line_is_a_data_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / MANIFEST
    path.write_text(line + "\n")
    with pytest.raises(DataError, match="line 1 is not 'SHA256  RELATIVE/PATH'"):
        read_manifest(path)


def test_list_sets_counts_kinds_licences_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    root, source, infos, unread = list_sets()
    assert root == VENDORED and source == "vendored"
    by = {i.name: i for i in infos}
    # counts as the PROVENANCE files state them
    assert (by["xstest-safe"].rows, by["oktest"].rows, by["or-bench"].rows, by["coconot"].rows) == (250, 300, 1319, 379)
    assert (by["safety"].rows, by["refusal-pairs"].rows, by["judge-calibration"].rows) == (938, 2483, 1350)
    assert by["alpaca-eval-text_davinci_003"].rows == 803  # two empty upstream outputs left out
    assert by["harmfulq"].licence == "CC-BY-NC-4.0" and by["oktest"].licence == "none stated"
    assert by["oktest"].source == "oktest/OKTest.csv" and by["mmlu"].source == "mmlu/ (114 files)"
    assert by["safety"].source == "advbench/harmful_behaviors.csv, safety-tuned-llamas/ (4 files)"
    hub = {i.name: i.source for i in infos if i.rows is None}
    assert hub == {"phtest": "hub: furonghuang-lab/PHTest", "or-bench-toxic": "hub: bench-llm/or-bench",
                   "alpaca": "hub: tatsu-lab/alpaca"}
    assert (by["refine-coconot-pref"].rows, by["refine-coconot-original"].rows) == (919, 395)  # unique prompts
    assert unread == ["oktest/OKTest_heldout.csv", "xstest/xstest_v2_prompts.csv"]


def test_list_sets_marks_a_set_it_cannot_read(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "oktest" / "OKTest.csv").unlink()
    _, source, infos, _ = list_sets(root)
    ok = next(i for i in infos if i.name == "oktest")
    assert source == "--data-dir" and ok.rows is None and "cannot be read here" in ok.note and "OKTest.csv" in ok.note


def test_the_package_ships_the_vendored_files() -> None:
    """A plain ``pip install`` (a wheel) carries package data only: the glob must be there, and no data directory
    may become a namespace package."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "data/vendored/**/*" in setuptools["package-data"]["dcr"]
    assert setuptools["packages"]["find"]["namespaces"] is False
