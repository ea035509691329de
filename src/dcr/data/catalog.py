"""Every data set dcr reads, with its rows, kind, licence and files (``dcr data list``), and the check of a data
directory against the committed sha256 manifest of the vendored copy (``dcr data verify``).

Rows are counted by the loaders dcr itself uses, and the files a set was read from are the ones those loaders
opened (``dcr.fingerprint.track_reads``), so the listing cannot drift from what a stage would read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dcr.data.registry import BENCHMARKS, BenchmarkMissing, data_dir
from dcr.data.training import ALPACA_HUB, load_alpaca_eval, load_alpaca_instructions, load_refusal_pairs
from dcr.datadir import MANIFEST, VENDORED, data_dir_source
from dcr.errors import DataError, DcrError
from dcr.fingerprint import track_reads

# licence as stated by each source (the sub-directory's PROVENANCE.md has the details)
LICENCES = {
    "xstest": "CC-BY-4.0",
    "safety-tuned-llamas": "CC-BY-NC-4.0",
    "advbench": "MIT (AdvBench); mirror Apache-2.0",
    "hh-rlhf": "MIT",
    "alpaca": "CC-BY-NC-4.0",
    "alpaca-eval": "CC-BY-NC-4.0",
    "coconot": "MIT",
    "or-bench": "CC-BY-4.0 (hub card)",
    "oktest": "none stated",
    "mmlu": "MIT",
    "arc": "CC-BY-SA-4.0",
    "openbookqa": "Apache-2.0",
    "piqa": "AFL-3.0",
    "judge-calibration": "CC-BY-4.0",
}
HUB_LICENCES = {"phtest": "not stated in dcr (see the hub card)", "or-bench-toxic": "CC-BY-4.0 (hub card)",
                "alpaca": "CC-BY-NC-4.0"}
DOC_FILES = ("README.md", MANIFEST)  # in a data directory, not data: not in the manifest


@dataclass(frozen=True)
class SetInfo:
    """One row of ``dcr data list``."""

    name: str
    kind: str
    rows: int | None  # None: hub-only, or missing here
    licence: str
    source: str  # files read (relative to the data directory), or "hub: ID"
    note: str = ""


Loader = Callable[[Path], list[Any]]


def _general() -> dict[str, tuple[str, Loader]]:
    from dcr.evaluate.general import GENERAL, load_general

    # 5 shots, so MMLU's dev split (the few-shot examples) is read and listed too
    return {n: ("general", lambda r, n=n: load_general(n, r, shots=5 if n == "mmlu" else 0)) for n in GENERAL}


def _extra_sets() -> dict[str, tuple[str, Loader]]:
    """The sets outside the benchmark registry: training data, general ability, judge calibration."""
    from dcr.judges.calibrate import load_items

    sets: dict[str, tuple[str, Loader]] = {
        "refusal-pairs": ("training", load_refusal_pairs),
        "alpaca-instructions": ("training", load_alpaca_instructions),
    }
    for ref in ("gpt4", "text_davinci_003", "gpt4_1106_preview"):
        sets[f"alpaca-eval-{ref}"] = ("reference", lambda r, ref=ref: load_alpaca_eval(r, ref))
    from dcr.refine.sources import SOURCES

    for name in ("coconot-pref", "coconot-original"):  # refine's sources outside the benchmark registry
        sets[f"refine-{name}"] = ("training", lambda r, s=SOURCES[name]: s.load(str(r), 0.2, 0))
    sets.update(_general())
    sets["judge-calibration"] = ("calibration", lambda r: load_items(r / "judge-calibration"))
    return sets


def set_loaders() -> dict[str, tuple[str, Loader]]:
    """Every offline set dcr reads: name -> (kind, the loader a stage uses, given a data directory). ``dcr data
    list`` counts with these, and the generated bad-file test (tests/data/test_input_files.py) corrupts every
    file they read."""
    sets: dict[str, tuple[str, Loader]] = {n: (BENCHMARKS[n].kind, BENCHMARKS[n].loader) for n in offline_benchmarks()}
    sets.update(_extra_sets())
    return sets


def offline_benchmarks() -> tuple[str, ...]:
    return tuple(n for n, s in BENCHMARKS.items() if not s.hub_id)


def check_sets(names: tuple[str, ...] | list[str], root: Path) -> None:
    """Read every row of each named set (``DataError`` names the file and row); a set whose data is absent here
    (``BenchmarkMissing``: optional or hub-only data) is left to the stage, which reports it as missing."""
    loaders = set_loaders()
    for name in dict.fromkeys(names):
        if name not in loaders:
            raise DcrError(f"internal: data set {name!r} is not in dcr.data.catalog.set_loaders")
        try:
            loaders[name][1](root)
        except BenchmarkMissing:
            pass


def _rel(paths: set[str], root: Path) -> list[str]:
    base = root.resolve()
    out = []
    for p in sorted(paths):
        try:
            out.append(str(Path(p).relative_to(base)))
        except ValueError:
            out.append(p)
    return out


def _read_set(name: str, kind: str, load: Loader, root: Path) -> tuple[SetInfo, list[str]]:
    with track_reads() as reads:
        try:
            rows, note = len(load(root)), ""
        except (DataError, BenchmarkMissing) as exc:
            rows, note = None, f"cannot be read here: {exc}"
    files = _rel(reads, root)
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(f.split("/")[0] if not f.startswith("/") else f, []).append(f)
    licence = "; ".join(LICENCES.get(d, "unknown") for d in by_dir) or "unknown"
    shown = [fs[0] if len(fs) == 1 else f"{d}/ ({len(fs)} files)" for d, fs in by_dir.items()]
    return SetInfo(name, kind, rows, licence, ", ".join(shown), note), files


def list_sets(root: str | Path | None = None) -> tuple[Path, str, list[SetInfo], list[str]]:
    """(data directory, what chose it, one SetInfo per set, data files no set reads)."""
    source = data_dir_source(root)[1]
    path = data_dir(root)
    infos, read = [], set()
    for name, (kind, load) in set_loaders().items():
        info, files = _read_set(name, kind, load, path)
        infos.append(info)
        read.update(files)
    for name, spec in BENCHMARKS.items():
        if spec.hub_id:
            infos.append(SetInfo(name, spec.kind, None, HUB_LICENCES.get(name, "unknown"), f"hub: {spec.hub_id}",
                                 "hub-only: loads when the hub can be reached"))
    infos.append(SetInfo("alpaca", "training", None, HUB_LICENCES["alpaca"], f"hub: {ALPACA_HUB}",
                         "hub-only (52,002 pairs with responses): align general_source alpaca-hub"))
    unread = [f for f in data_files(path) if f not in read and PurePosixPath(f).name != "PROVENANCE.md"]
    return path, source, infos, unread


def data_files(root: Path) -> list[str]:
    """Every file under ``root`` (relative, posix), except the README and the manifest at its top."""
    return sorted(str(p.relative_to(root).as_posix()) for p in root.rglob("*")
                  if p.is_file() and str(p.relative_to(root)) not in DOC_FILES and "__pycache__" not in p.parts)


def read_manifest(path: Path = VENDORED / MANIFEST) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-format file; DataError on a malformed line."""
    if not path.is_file():
        raise DataError(path, "file not found", "reinstall dcr; the manifest ships with the vendored data")
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        parts = PurePosixPath(rel).parts
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not parts \
                or rel.startswith("/") or ".." in parts:
            raise DataError(path, f"line {i} is not 'SHA256  RELATIVE/PATH'",
                            "regenerate it: cd src/dcr/data/vendored && sha256sum $(find . -type f ...)", row=i)
        out[rel] = digest
    return out


@dataclass
class Verification:
    """What ``dcr data verify`` found: files that match, that differ or are absent, and files not listed."""

    root: Path
    ok: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.bad


def verify(root: str | Path | None = None, manifest: Path = VENDORED / MANIFEST) -> Verification:
    """Check every file of the committed manifest in the data directory (sha256)."""
    path = data_dir(root)
    expected = read_manifest(manifest)
    if not expected:
        raise DcrError(f"{manifest} lists no files. Fix: reinstall dcr")
    result = Verification(path)
    for rel, digest in expected.items():
        file = path / rel
        if not file.is_file():
            result.bad.append((rel, "missing"))
        elif hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            result.bad.append((rel, "sha256 differs"))
        else:
            result.ok.append(rel)
    result.unlisted = [f for f in data_files(path) if f not in expected]
    return result
