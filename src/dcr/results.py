"""Flat measurement records appended to ``RUN_DIR/results.jsonl``; the report reads only this file.

One record is one number, e.g.::

    {"model": "smollm2-135m", "method": "stl", "seed": 0, "benchmark": "xstest",
     "split": "in-distribution", "metric": "compliance_rate", "value": 0.91, "n": 200,
     "judge": "keyword", "stage": "evaluate", "time": "..."}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
