"""Flat measurement records appended to ``RUN_DIR/results.jsonl``; the report reads only this file.

One record is one number, e.g.::

    {"model": "smollm2-135m", "method": "stl", "seed": 0, "benchmark": "xstest",
     "split": "in-distribution", "metric": "compliance_rate", "value": 0.91, "n": 200,
     "judge": "keyword", "stage": "evaluate", "time": "..."}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dcr.errors import DataError
from dcr.io import append_jsonl, read_jsonl

RESULTS = "results.jsonl"


def record(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Append one flat record (scalars only) to ``path`` (a results.jsonl file or a directory)."""
    path = Path(path)
    if path.suffix != ".jsonl":
        path = path / RESULTS
    for key, val in fields.items():
        if isinstance(val, (dict, list, tuple, set)):
            raise TypeError(f"result field {key!r} must be a scalar, got {type(val).__name__}")
    row = {**fields, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    append_jsonl(path, [row])
    return row


def load(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    return read_jsonl(path)


def load_checked(path: str | Path) -> tuple[list[dict[str, Any]], bool]:
    """(records, torn) of a results.jsonl, for reports: a corrupt line is a DataError naming its row; a cut-off
    last line (a writer still appending, or killed) is dropped and reported as ``torn``, unless it is the only
    line, which is an error."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.exists():
        return [], False
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason})", "restore the file from the run's stages") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    unfinished = lines[-1].strip() != ""  # no newline after the last line yet
    rows, torn = [], False
    for k, (i, line) in enumerate(numbered):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if k == len(numbered) - 1 and unfinished and rows:
                torn = True  # the last line has no newline yet: a record being written
                break
            raise DataError(path, "line is not a complete JSON record", "remove the line, or rerun `dcr run` "
                            "to rewrite results.jsonl from the stages", row=i) from None
        if not isinstance(row, dict):
            raise DataError(path, "line is not a JSON object", "remove the line", row=i)
        rows.append(row)
    return rows, torn
