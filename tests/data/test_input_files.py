"""Bad input files by class (issue 30): every file every offline set reads x every kind of damage.

The cases are generated, not listed: :func:`dcr.data.catalog.set_loaders` names every set dcr reads and the
loader a stage uses; ``track_reads`` tells which files each loader opens; the file's format (CSV, JSONL, JSON,
each maybe gzipped) gives the damage that applies to it:

- ``empty``: zero bytes;
- ``header-only``: a CSV cut to its first line, a JSON document with its list emptied;
- ``missing:COL``: one column (CSV) or one row's field (JSONL / JSON objects) removed, for each column;
- ``null:COL``: one row's value emptied (CSV) or set to null (JSON), for each column;
- ``non-utf8``: a byte that is not UTF-8 in the middle of the text;
- ``torn``: the file cut inside its last row (a killed copy); not for a one-column CSV, where that is a
  shorter valid row.

Each case runs the loader on a data directory that differs from the vendored one in that file only. It must
either raise ``DataError`` naming the file (with the row where the damage is in a row) or, where the loader does
not read the damaged column, return exactly what it returns on the intact file. Anything else (another
exception, or rows that silently differ) fails. A new set, file or column is covered without anyone writing a
case. Through the command line, a sample of these reaches each verb's validation before any weights load
(tests/test_validation.py). The default suite runs a fixed-seed sample; ``-m slow`` runs all of them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dcr.data.catalog import set_loaders
from dcr.datadir import VENDORED
from dcr.errors import DataError
from dcr.fingerprint import track_reads

# a column a loader documents as optional as a whole: without it, the documented default stands in
OPTIONAL_COLUMNS = {("judge-calibration", "id"): "row numbers are the ids (dcr.judges.calibrate)"}
MAX_FILES_PER_SET = 2  # MMLU reads 114 files of one shape: its first two stand for the rest
Damage = Callable[[str], str | bytes | None]  # the intact text -> the damaged content (None: does not apply)


def _read(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8-sig")


def _fmt(rel: str) -> str:
    return Path(rel.removesuffix(".gz")).suffix.lstrip(".")


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _jsonl_rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def _json_items(obj: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """The list of rows inside a JSON document, and how to put a changed list back."""
    if isinstance(obj, list):
        return obj, lambda items: items
    key = next(k for k, v in obj.items() if isinstance(v, list))
    return obj[key], lambda items: {**obj, key: items}


def _columns(rel: str, text: str) -> list[str]:
    fmt = _fmt(rel)
    if fmt == "csv":  # by index: a headerless CSV (MMLU) has no names
        return [f"{i}={name[:16]}" for i, name in enumerate(_csv_rows(text)[0])]
    if fmt == "lst":
        return ["<line>"]
    rows = _jsonl_rows(text) if fmt == "jsonl" else _json_items(json.loads(text))[0]
    mid = rows[len(rows) // 2]
    return list(mid) if isinstance(mid, dict) else ["<item>"]


def _column_damage(rel: str, col: str, null: bool) -> Damage:
    fmt = _fmt(rel)

    def damage(text: str) -> str | None:
        if fmt == "csv":
            rows = _csv_rows(text)
            i = int(col.split("=")[0])
            if null:
                mid = len(rows) // 2 or 1
                rows[mid] = [("" if j == i else v) for j, v in enumerate(rows[mid])]
            else:
                rows = [[v for j, v in enumerate(r) if j != i] for r in rows]
            return _csv_text(rows)
        if fmt == "lst":  # one value per line: blank one, or drop one
            lines, m = text.split("\n"), text.count("\n") // 2
            if null:
                lines[m] = ""
            else:
                del lines[m]
            return "\n".join(lines)
        if fmt == "jsonl":
            rows = _jsonl_rows(text)
            mid = rows[len(rows) // 2]
            mid.update({col: None}) if null else mid.pop(col)
            return "".join(json.dumps(r) + "\n" for r in rows)
        items, put = _json_items(json.loads(text))
        m = len(items) // 2
        if col == "<item>":
            if not null:
                return None  # a list of strings has no field to remove
            items[m] = None
        else:
            items[m].update({col: None}) if null else items[m].pop(col)
        return json.dumps(put(items))

    return damage


def _header_only(rel: str) -> Damage:
    fmt = _fmt(rel)
    if fmt == "csv":
        return lambda text: text.split("\n", 1)[0] + "\n"
    if fmt == "json":
        return lambda text: json.dumps(_json_items(json.loads(text))[1]([]))
    return lambda text: None  # JSONL and one-value-per-line files have no header


def _torn(rel: str) -> Damage:
    """The file cut inside its last row. A one-column CSV cut inside its last row is a shorter valid row (dcr
    cannot tell it from an intact file without a final-newline rule, which the vendored files do not follow):
    not generated. A JSON document is cut inside its last item."""
    fmt = _fmt(rel)

    def torn(text: str) -> str | None:
        if fmt == "csv" and len(_csv_rows(text)[0]) == 1:
            return None
        if fmt == "json":
            return text[: text.rstrip().rstrip("]}").rstrip().rstrip("]}").rfind(":") + 3]
        body = text.rstrip("\n")
        start = body.rfind("\n") + 1
        return body[: start + max(1, (len(body) - start) // 3)]

    return torn


def _non_utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    mid = len(raw) // 2
    return raw[:mid] + b"\xff\xfe" + raw[mid:]


def damages(rel: str, text: str) -> dict[str, Damage]:
    out: dict[str, Damage] = {"empty": lambda t: "", "header-only": _header_only(rel), "non-utf8": _non_utf8,
                              "torn": _torn(rel)}
    for col in _columns(rel, text):
        out[f"missing:{col}"] = _column_damage(rel, col, null=False)
        out[f"null:{col}"] = _column_damage(rel, col, null=True)
    return out


def files_read() -> dict[str, list[str]]:
    """set name -> the vendored files its loader reads (relative), at most MAX_FILES_PER_SET."""
    out = {}
    for name, (_, load) in set_loaders().items():
        with track_reads() as reads:
            load(VENDORED)
        rels = sorted(str(Path(p).resolve().relative_to(VENDORED.resolve())) for p in reads)
        out[name] = rels[:MAX_FILES_PER_SET]
    return out


def all_cases() -> list[tuple[str, str, str]]:
    """(set, file, damage); a file read by several sets is damaged once, for the first set that reads it."""
    cases, seen = [], set()
    for name, rels in files_read().items():
        for rel in rels:
            if rel not in seen:
                seen.add(rel)
                cases += [(name, rel, d) for d in damages(rel, _read(VENDORED / rel))]
    return cases


CASES = all_cases()
SAMPLE = random.Random(0).sample(CASES, min(60, len(CASES)))


def damaged_root(tmp: Path, rel: str, content: str | bytes) -> Path:
    """A data directory of links to the vendored files, with ``rel`` replaced by ``content``."""
    root = tmp / "data"
    parts = Path(rel).parts
    here, src = root, VENDORED
    for depth, part in enumerate(parts):
        here.mkdir(parents=True, exist_ok=True)
        for entry in src.iterdir():
            if entry.name != part and not (here / entry.name).exists():
                (here / entry.name).symlink_to(entry.resolve())
        here, src = here / part, src / part
        if depth == len(parts) - 1:
            raw = content.encode("utf-8") if isinstance(content, str) else content
            here.write_bytes(gzip.compress(raw) if rel.endswith(".gz") else raw)
    return root


def check_case(name: str, rel: str, damage_name: str, tmp_path: Path) -> None:
    _, load = set_loaders()[name]
    intact = load(VENDORED)
    content = damages(rel, _read(VENDORED / rel))[damage_name](_read(VENDORED / rel))
    if content is None:
        pytest.skip(f"{damage_name} does not apply to {_fmt(rel)}")
    root = damaged_root(tmp_path, rel, content)
    try:
        got = load(root)
    except DataError as exc:
        msg = str(exc)
        assert Path(rel).name in msg and "Fix:" in msg and "\n" not in msg, msg
        return
    if damage_name.startswith("missing:") and (name, damage_name.split("=")[-1]) in OPTIONAL_COLUMNS:
        assert len(got) == len(intact)
        return
    assert got == intact, f"{name}: {damage_name} in {rel} was read without an error, and the rows differ"


def test_the_cases_cover_every_format_and_damage() -> None:
    fmts = {_fmt(rel) for _, rel, _ in CASES}
    kinds = {d.split(":")[0] for _, _, d in CASES}
    assert {"csv", "jsonl", "json"} <= fmts and len({r for _, r, _ in CASES}) >= 20
    assert kinds == {"empty", "header-only", "missing", "null", "non-utf8", "torn"}


@pytest.mark.parametrize("name,rel,damage", SAMPLE, ids=[f"{n}:{Path(r).name}:{d}" for n, r, d in SAMPLE])
def test_a_damaged_file_is_refused_naming_it(name: str, rel: str, damage: str, tmp_path: Path) -> None:
    check_case(name, rel, damage, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,rel,damage", CASES, ids=[f"{n}:{r}:{d}" for n, r, d in CASES])
def test_every_damaged_file(name: str, rel: str, damage: str, tmp_path: Path) -> None:
    check_case(name, rel, damage, tmp_path)


# ------------------------------------------------------------------ through every verb, before any weights load

def verb_cases() -> list[tuple[tuple[str, ...], str, str, str]]:
    """(verb, set, file, damage): every stage verb x every file of the sets it declares (``data_sets``) x every
    damage that must be refused (a damaged column the loader does not read is not an error)."""
    from test_validation import VERBS  # tests/ is on sys.path (its conftest.py)

    read = files_read()
    must_fail = ("empty", "non-utf8", "torn", "header-only")
    out = []
    for verb, cls in VERBS.items():
        extra = {"refine_stage": "r"} if verb == ("probe", "confound") else {}  # unreadable: the paper's refine sets
        by_file = {rel: name for name in cls(model="tiny", **extra).data_sets() for rel in read[name]}
        out += [(verb, name, rel, d) for rel, name in sorted(by_file.items()) for d in must_fail
                if damages(rel, _read(VENDORED / rel))[d](_read(VENDORED / rel)) is not None]
    return out


VERB_SAMPLE = random.Random(0).sample(verb_cases(), 16)


def fake_refine_stage(path: Path, model: Path) -> Path:
    """What ``dcr probe confound`` reads of a refine stage: its config.yaml (the paper's data) and its layer."""
    import dataclasses

    import yaml

    from dcr.refine import RefineConfig

    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(RefineConfig(model=str(model)))))
    (path / "metrics.json").write_text('{"layer": 1}')
    return path


def check_verb(verb: tuple[str, ...], rel: str, damage: str, tmp_path: Path, tiny_dir: Path,
               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    import dcr.models
    from dcr.cli import main

    text = _read(VENDORED / rel)
    root = damaged_root(tmp_path, rel, damages(rel, text)[damage](text))  # type: ignore[arg-type]
    import transformers

    def fail(*a: Any, **k: Any) -> None:
        pytest.fail("weights loaded before the check")

    monkeypatch.setattr(dcr.models, "load_model", fail)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fail)
    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    out = tmp_path / "out"
    extra = ["--refine-stage", str(fake_refine_stage(tmp_path / "refine", tiny_dir))] if verb == ("probe", "confound") \
        else []
    monkeypatch.setattr(sys, "argv", ["dcr", *verb, "--model", str(tiny_dir), "--out", str(out),
                                      "--data-dir", str(root), *extra])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert Path(rel).name in err and "Fix:" in err, err
    assert not out.exists()


@pytest.mark.parametrize("verb,name,rel,damage", VERB_SAMPLE,
                         ids=[f"{' '.join(v)}:{Path(r).name}:{d}" for v, _, r, d in VERB_SAMPLE])
def test_a_verb_refuses_a_damaged_file_before_weights_load(verb: tuple[str, ...], name: str, rel: str, damage: str,
                                                           tmp_path: Path, tiny_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    check_verb(verb, rel, damage, tmp_path, tiny_dir, monkeypatch, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("verb,name,rel,damage", verb_cases(),
                         ids=[f"{' '.join(v)}:{r}:{d}" for v, _, r, d in verb_cases()])
def test_every_verb_and_damaged_file(verb: tuple[str, ...], name: str, rel: str, damage: str, tmp_path: Path,
                                     tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    check_verb(verb, rel, damage, tmp_path, tiny_dir, monkeypatch, capsys)


# ------------------------------------------------------------------ files a user hands over

def _user_rows() -> list[dict[str, str]]:
    pairs = set_loaders()["alpaca-eval-gpt4"][1](VENDORED)[:6]
    return [{"id": f"u{i}", "prompt": p.prompt, "response": p.response} for i, p in enumerate(pairs)]


def _general(path: Path) -> list[Any]:
    from dcr.align.data import general_from_file

    return general_from_file(str(path), 6, 0)


def _judged(path: Path) -> list[Any]:
    from dcr.judges.commands import column_values, read_table

    rows, cols = read_table(path)
    return [column_values(path, rows, cols, c, "--column") for c in ("prompt", "completion")]


def _as_csv(rows: list[dict[str, str]]) -> str:
    return _csv_text([list(rows[0]), *[list(r.values()) for r in rows]])


USER_FILES: dict[str, tuple[Callable[[], str], Callable[[Path], list[Any]]]] = {
    # align general_file: JSONL of prompt / response (id optional)
    "general.jsonl": (lambda: "".join(json.dumps(r) + "\n" for r in _user_rows()), _general),
    # dcr judge input, both formats
    "completions.jsonl": (lambda: "".join(json.dumps({"prompt": r["prompt"], "completion": r["response"]}) + "\n"
                                          for r in _user_rows()), _judged),
    "completions.csv": (lambda: _as_csv([{"prompt": r["prompt"], "completion": r["response"]} for r in _user_rows()]),
                        _judged),
}
USER_OPTIONAL = {("general.jsonl", "id")}  # documented default: general-ROW
# CSV has no null: an empty cell of `dcr judge`'s input is the empty string, and an empty answer is an answer
# the judge must label (JSONL's null is refused: tested above)
EMPTY_IS_A_VALUE = {("completions.csv", "prompt"), ("completions.csv", "completion")}
USER_CASES = [(f, d) for f, (make, _) in USER_FILES.items() for d in damages(f, make())]


@pytest.mark.parametrize("file,damage", USER_CASES, ids=[f"{f}:{d}" for f, d in USER_CASES])
def test_a_damaged_user_file_is_refused_naming_it(file: str, damage: str, tmp_path: Path) -> None:
    make, load = USER_FILES[file]
    intact_path = tmp_path / "intact" / file
    intact_path.parent.mkdir()
    intact_path.write_text(make(), encoding="utf-8")
    content = damages(file, make())[damage](make())
    if content is None:
        pytest.skip(f"{damage} does not apply to {_fmt(file)}")
    path = tmp_path / file
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    try:
        got = load(path)
    except DataError as exc:
        assert file in str(exc) and "Fix:" in str(exc) and "\n" not in str(exc), str(exc)
        return
    col = damage.split(":")[-1].split("=")[-1]
    if damage.startswith("missing:") and (file, col) in USER_OPTIONAL or \
            damage.startswith("null:") and (file, col) in EMPTY_IS_A_VALUE:
        return
    intact = load(intact_path)
    if file == "general.jsonl":  # the source names the path
        got, intact = [{**r, "source": ""} for r in got], [{**r, "source": ""} for r in intact]
    assert got == intact, f"{damage} in {file} was read without an error, and the rows differ"
