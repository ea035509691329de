"""The shipped calibration record (``calibration.json``) and ``calibration_of(judge_name)``.

The record holds, per judge (``keyword``, ``prefix``), its overall agreement and Cohen's kappa with 95%
bootstrap intervals and ``n`` on the default calibration data (``judge-calibration`` in the data directory: the
vendored copy unless ``$DCR_DATA_DIR`` is set), per-model and leave-one-model-out numbers, and a
fingerprint of the judge's rules. Regenerate it after changing a rule:

    python -m dcr.judges.record

A test recomputes the record from the data and requires the shipped file to match, so it never goes stale.
``calibration_of`` returns None for a judge that is not in the record or whose rules changed since.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dcr.judges import keyword, prefix

RECORD = Path(__file__).with_name("calibration.json")
COMMAND = "python -m dcr.judges.record"
FINGERPRINTS: dict[str, Callable[[], str]] = {"keyword": keyword.rules_fingerprint,
                                              "prefix": prefix.rules_fingerprint}
HEADLINE = ("agreement", "kappa")


def _pick(metrics: dict[str, Any], names: Sequence[str] = HEADLINE) -> dict[str, Any]:
    return {m: metrics[m] for m in names}


def build_record(data: str | Path | None = None, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The record computed from ``data`` (default calibration data); deterministic for a given seed."""
    from dcr.judges.calibrate import calibrate
    from dcr.judges.lomo import leave_one_model_out

    result = calibrate("keyword", data, resamples=resamples, seed=seed, top=0)
    lomo = leave_one_model_out(data, ("keyword", "prefix"), resamples=resamples, seed=seed)
    report = result.report
    judges: dict[str, Any] = {}
    for name, fingerprint in FINGERPRINTS.items():
        judges[name] = {
            "fingerprint": fingerprint(),
            "n": report["overall"]["n"],
            **_pick(report["overall"][name]),
            "groups": {g: {"n": e["n"], **_pick(e[name])} for g, e in report["groups"].items()},
            "leave_one_model_out": {g: _pick(r[name]) for g, r in lomo["rotations"].items()},
        }
        if name != "prefix":
            judges[name]["minus_prefix"] = _pick(report["overall"]["difference"])
            for g, r in lomo["rotations"].items():
                judges[name]["leave_one_model_out"][g]["minus_prefix"] = _pick(r["difference"][name])
    return {
        "about": "Refusal judges vs XSTest v2 human labels (full or partial refusal = refusal); see docs/judges.md",
        "regenerate": COMMAND,
        "data": {"files": [{"name": Path(d["path"]).name, "sha256": d["sha256"]} for d in report["data"]],
                 "n": report["overall"]["n"], "human_refusals": report["overall"]["human_refusals"]},
        "bootstrap": report["bootstrap"],
        "judges": judges,
    }


def write_record(path: str | Path = RECORD, data: str | Path | None = None) -> Path:
    """Recompute the record and write it (sorted keys, trailing newline, so diffs stay small)."""
    from dcr.io import atomic_open

    path = Path(path)
    with atomic_open(path) as fh:
        fh.write(json.dumps(build_record(data), indent=1, sort_keys=True) + "\n")
    return path


def read_record(path: str | Path = RECORD) -> dict[str, Any]:
    """The shipped record, or ``{}`` when there is none."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def calibration_of(judge_name: str, path: str | Path = RECORD) -> dict[str, Any] | None:
    """The shipped calibration of ``judge_name`` (``keyword``, ``prefix``) or None (uncalibrated).

    The dict holds ``agreement`` and ``kappa`` (``{"value", "low", "high"}``), ``n``, ``fingerprint``,
    ``groups``, ``leave_one_model_out``, plus the record's ``data`` and ``bootstrap``. None when the judge
    is not in the record or its rules changed since the record was written (fingerprint mismatch).
    """
    record = read_record(path)
    entry = record.get("judges", {}).get(judge_name)
    current = FINGERPRINTS.get(judge_name)
    if entry is None or current is None or entry.get("fingerprint") != current():
        return None
    return {**entry, "judge": judge_name, "data": record["data"], "bootstrap": record["bootstrap"]}


def judge_identity(spec: str | None) -> str | None:
    """What identifies a judge's verdicts: its spec plus the fingerprint of its rules for rule judges, or of its
    prompt, parsing and default options for model judges (so a changed rule or reading invalidates cached
    judgements and finished evaluate stages, and no verdict is read under rules it was not judged by)."""
    if spec is None:
        return None
    from dcr.judges.unrelated import MODIFIER, rule_fingerprint, split_spec

    inner, scorer = split_spec(spec)
    if scorer is not None:
        return f"{judge_identity(inner)}{MODIFIER}{scorer}@{rule_fingerprint()}"
    fingerprint = FINGERPRINTS.get(spec.strip().lower()) or _reading_fingerprint(spec)
    return f"{spec}@{fingerprint()}" if fingerprint else spec


def _reading_fingerprint(spec: str) -> Callable[[], str] | None:
    """The reading fingerprint of a model judge (``http:``, ``guard:``): its prompt, parsing and default options."""
    kind = spec.partition(":")[0].strip().lower()
    if kind == "http":
        from dcr.judges.http import reading_fingerprint

        return reading_fingerprint
    if kind == "guard":
        from dcr.judges.guard import reading_fingerprint as guard_fingerprint

        return guard_fingerprint
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dcr.judges.record", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="calibration data (default: judge-calibration in the data directory)")
    parser.add_argument("--out", default=str(RECORD), help="where to write the record (default: the shipped one)")
    args = parser.parse_args(argv)
    print(write_record(args.out, args.data))


if __name__ == "__main__":
    main()
