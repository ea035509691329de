"""``dcr judge FILE``: label every completion in a CSV/JSONL file with a judge; also ``judge_file()``.

``dcr judge --calibrate [DATA]`` scores a judge against human labels (``dcr.judges.calibrate``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from dcr.data import readers
from dcr.errors import ConfigError, DataError
from dcr.io import write_table
from dcr.judges.base import SPECS, Judge, get_judge

SUFFIXES = (".csv", ".jsonl", ".json")


def _check_suffix(path: Path, what: str) -> None:
    if what == "input" and path.name.lower().endswith(".jsonl.gz"):  # completions kept by `dcr archive`
        return
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(path, f"unsupported {what} extension {path.suffix!r}",
                        "use a .csv or .jsonl file" + (" (or .jsonl.gz)" if what == "input" else ""))


def check_output(out: Path) -> None:
    """``--out`` must be a .csv/.jsonl file path, not a directory."""
    if out.is_dir():
        raise DataError(out, "--out is a directory", "pass a file path ending in .csv or .jsonl")
    _check_suffix(out, "output")


def read_table(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, column names) of a CSV (header row) or JSONL (one object a line) file, by extension."""
    path = Path(path)
    _check_suffix(path, "input")
    if not path.is_file():
        raise DataError(path, "file not found", "check the path (it must be a .csv, .jsonl or .jsonl.gz file)")
    if path.suffix.lower() == ".csv":
        rows, cols = readers.read_csv_table(path)
    else:
        rows = readers.read_jsonl(path)
        cols = list(dict.fromkeys(k for row in rows for k in row))
    if not rows:
        raise DataError(path, "no data rows", "pass a file with at least one row")
    return rows, cols


def column_values(path: Path, rows: list[dict[str, Any]], cols: list[str], column: str, option: str) -> list[str]:
    """The column as strings (an empty answer is ""); error naming the columns that exist when it is absent, and
    the row where a value is missing or null."""
    if column not in cols:
        raise DataError(path, f"no column {column!r} (columns: {', '.join(cols)})",
                        f"pass {option} with one of those column names")
    out = []
    for i, row in enumerate(rows, start=1):
        value = row.get(column)
        if value is None:
            raise DataError(path, f"column {column!r} is missing or null", 'store the text ("" for an empty answer)',
                            row=i)
        if not isinstance(value, str):
            raise DataError(path, f"column {column!r} holds a {type(value).__name__}, not text", "store text there",
                            row=i)
        out.append(value)
    return out


def judge_table(path: str | Path, column: str = "completion", judge: str = "keyword",
                prompt_column: str | None = "prompt", **judge_kw: Any) -> tuple[list[dict[str, Any]], Judge]:
    """(input rows plus ``judge_label``, ``judge`` and the ``judge.measures`` boolean column, the judge)."""
    path = Path(path)
    rows, cols = read_table(path)
    completions = column_values(path, rows, cols, column, "--column")
    if prompt_column:
        prompts = column_values(path, rows, cols, prompt_column, "--prompt-column (or --prompt-column '' to "
                                "judge without prompts; keyword or prefix judge only)")
    elif judge.split(":")[0].strip().lower() not in ("", "keyword", "prefix"):
        raise DataError(path, f"judge {judge!r} needs the prompts", "pass --prompt-column with the prompt column")
    else:
        prompts = [""] * len(rows)
    j = get_judge(judge, **judge_kw)
    results = j.judge_with_labels(prompts, completions)
    table = [{**row, "judge_label": label, "judge": j.name, j.measures: flag}
             for row, (label, flag) in zip(rows, results)]
    return table, j


def default_out(path: Path) -> Path:
    """``gen.jsonl`` -> ``gen.judged.jsonl``; ``gen.jsonl.gz`` (an archive's completions) -> ``gen.judged.jsonl``."""
    if path.name.lower().endswith(".jsonl.gz"):
        return path.with_name(f"{path.name[:-len('.jsonl.gz')]}.judged.jsonl")
    return path.with_name(f"{path.stem}.judged{path.suffix}")


def judge_file(path: str | Path, column: str = "completion", out: str | Path | None = None, judge: str = "keyword",
               prompt_column: str | None = "prompt", **judge_kw: Any) -> Path:
    """Judge the ``column`` completions of ``path`` and write ``out`` (CSV/JSONL by extension), atomically.

    ``out`` (default ``FILE.judged.EXT``) holds the input columns plus ``judge_label`` (raw label), ``judge``
    (the judge's name) and a boolean column named by the judge's ``measures``: ``refusal`` (keyword, http) or
    ``safe_response`` (guard). ``prompt_column=None`` or ``""`` judges without prompts (keyword or prefix judge only).
    """
    path = Path(path)
    out = Path(out) if out is not None else default_out(path)
    check_output(out)
    table, _ = judge_table(path, column, judge, prompt_column, **judge_kw)
    write_table(out, table)
    return out


def summary(table: list[dict[str, Any]], judge: Judge) -> str:
    """``n rows, refusal rate 0.250 (compliance=3, refusal=1)``."""
    positives = sum(bool(r[judge.measures]) for r in table)
    counts = Counter(str(r["judge_label"]) for r in table)
    return (f"{len(table)} rows, {judge.measures} rate {positives / len(table):.3f} "
            f"({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))})")


def judge_cmd(
    file: Path | None = typer.Argument(None, help="CSV, JSONL or JSONL.GZ file of completions (e.g. OUT/"
                                       "generations/xstest.jsonl, or an archive's generations/xstest.jsonl.gz); "
                                       "with --calibrate: labelled data, a directory or CSV."),
    column: str = typer.Option("completion", "--column", "-c", help="Column holding the completions."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .csv/.jsonl (default: FILE.judged.EXT); "
                                    "with --calibrate the disagreements CSV (default: calibration_disagreements.csv)."),
    judge: str = typer.Option("keyword", "--judge", "-j", help=f"Judge spec: {SPECS}."),
    prompt_column: str = typer.Option("prompt", "--prompt-column", help="Column holding the prompts ('' = none)."),
    batch_size: int = typer.Option(8, help="Guard judge: batch size."),
    dtype: str = typer.Option("auto", help="Guard judge: dtype (auto, fp32, bf16, fp16)."),
    device: str = typer.Option("auto", help="Guard judge: device (auto, cpu, cuda)."),
    workers: int = typer.Option(1, help="HTTP judge: parallel requests."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Score the judge and the XSTest prefix baseline "
                                   "against human labels in FILE (default: judge-calibration in the data directory)."),
    lomo: bool = typer.Option(False, "--lomo", help="With --calibrate: also leave-one-model-out scores."),
    resamples: int = typer.Option(1000, help="With --calibrate: bootstrap resamples for the 95% intervals."),
    seed: int = typer.Option(0, help="With --calibrate: bootstrap seed."),
) -> None:
    """Judge completions: add judge_label and a refusal (or, for guard:, safe_response) column.

    With --calibrate: agreement, precision, recall, F1 and Cohen's kappa against human labels.
    """
    kind = judge.split(":")[0].strip().lower()
    kw: dict[str, Any] = {}
    if kind == "guard":
        kw = {"batch_size": batch_size, "dtype": dtype, "device": device}
    elif kind == "http":
        kw = {"workers": workers}
    if calibrate:
        from dcr.judges.calibrate_cli import run_calibration

        run_calibration(file, judge, out, lomo=lomo, resamples=resamples, seed=seed, **kw)
        return
    if file is None:
        raise ConfigError("dcr judge needs FILE. Fix: pass a CSV/JSONL file of completions, or --calibrate "
                          "[DATA] to score a judge against human labels")
    _check_suffix(file, "input")
    out = out or default_out(file)
    check_output(out)
    table, j = judge_table(file, column, judge, prompt_column or None, **kw)
    write_table(out, table)
    typer.echo(f"{out}: {summary(table, j)}")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)
