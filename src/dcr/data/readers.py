"""Validated file readers: every problem raises DataError naming the file, the row and the fix."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

from dcr.errors import DataError
from dcr.fingerprint import note_read


def _open_text(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found", "check --data-dir / DCR_DATA_DIR points at a data directory (see "
                        "its README.md), unset both for the vendored one, or pass a hub id")
    raw = path.read_bytes()
    note_read(path)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise DataError(path, f"not a valid gzip file ({exc})", "re-copy the file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc})", "re-save the file as UTF-8") from None
    if not text.strip():
        raise DataError(path, "file is empty", "re-copy the file; it must hold at least one row")
    return text


def read_csv(path: Path, required: tuple[str, ...], header: bool = True) -> list[dict[str, str]]:
    """Rows of a CSV as dicts; ``required`` columns must exist and be non-empty."""
    text = _open_text(path)
    if not header:
        # csv splits records itself: str.splitlines() would also break rows at \x85, \u2028, \x0c...
        plain = csv.reader(io.StringIO(text, newline=""))
        out = []
        for i, vals in enumerate(plain, start=1):
            if not vals:  # a blank line (csv.DictReader skips these too)
                continue
            if len(vals) != len(required):
                raise DataError(path, f"expected {len(required)} columns, found {len(vals)}",
                                "fix or remove the malformed row", row=i)
            row = dict(zip(required, vals))
            require_filled(path, row, required, i)
            out.append(row)
        return out
    rows, cols = read_csv_table(path, text)
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(path, f"missing column(s) {missing} (found {cols})",
                        f"the file needs a header with {list(required)}")
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        require_filled(path, row, required, i)
    if not rows:
        raise DataError(path, "no data rows after the header", "re-copy the file")
    return rows


def require_filled(path: Path, row: dict[str, str], columns: tuple[str, ...] | list[str], i: int) -> None:
    """Every one of ``columns`` of one CSV row holds more than whitespace, else DataError naming row ``i``."""
    for c in columns:
        if not (row.get(c) or "").strip():
            raise DataError(path, f"empty value in column {c!r}", "fill it in or remove the row", row=i)


def read_csv_table(path: Path, text: str | None = None) -> tuple[list[dict[str, str]], list[str]]:
    """(rows, header columns) of a CSV with a header row; malformed rows and unclosed quotes are errors."""
    text = _open_text(path) if text is None else text
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[dict[str, str]] = []
    start = 2  # the line where the record being read begins (line 1 is the header)
    try:
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise DataError(path, "wrong number of fields", "fix quoting or remove the row", row=start)
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        problem = "unterminated quote (the field runs to the end of the file)" if "end of data" in str(exc) \
            else f"malformed CSV ({exc})"
        raise DataError(path, problem, "close the quote or remove the row", row=start) from None
    return rows, list(reader.fieldnames or [])


def read_json(path: Path) -> Any:
    text = _open_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})", "fix the JSON syntax",
                        row=exc.lineno) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = _open_text(path)
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):  # splitlines() would also cut at \x85 / \u2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"line is not valid JSON ({exc.msg})", "fix or remove the line", row=i) from None
        if not isinstance(obj, dict):
            raise DataError(path, "line is not a JSON object", "each line must be {...}", row=i)
        rows.append(obj)
    return rows


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a one-value-per-line text file, stripped."""
    return [line.strip() for line in _open_text(path).split("\n") if line.strip()]


def optional_str(path: Path, obj: Any, key: str, row: int, default: str) -> str:
    """``obj[key]`` where present (then a non-empty string, not null), else ``default``."""
    if isinstance(obj, dict) and key not in obj:
        return default
    return require_str(path, obj, key, row)


def require_str(path: Path, obj: Any, key: str, row: int) -> str:
    """``obj[key]`` as a non-empty string, else DataError."""
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(path, f"missing field {key!r}", f"every row needs a {key!r} field", row=row)
    val = obj[key]
    if not isinstance(val, str) or not val.strip():
        raise DataError(path, f"field {key!r} is empty or not a string", "fill it in or remove the row", row=row)
    return val


def string_list(path: Path, obj: Any, key: str | None) -> list[str]:
    """A JSON list of non-empty strings (top level, or under ``key``)."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise DataError(path, f"missing top-level field {key!r}", f"the file must be {{\"{key}\": [...]}}")
        obj = obj[key]
    if not isinstance(obj, list) or not obj:
        raise DataError(path, "expected a non-empty JSON list", "re-copy the file")
    for i, val in enumerate(obj, start=1):
        if not isinstance(val, str) or not val.strip():
            raise DataError(path, "item is empty or not a string", "fix or remove the item", row=i)
    return obj
