"""Data loaders: real-data counts, and a DataError naming file, row and fix for every kind of broken file."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcr.data import (
    SAFETY_SETS,
    BenchmarkMissing,
    load_alpaca_eval,
    load_alpaca_instructions,
    load_benchmark,
    load_hh_harmful,
    load_refusal_pairs,
    readers,
    subsample,
    xstest_split,
)
from dcr.data import data_dir as resolve_data_dir
from dcr.datadir import VENDORED
from dcr.errors import DataError, DcrError

MMLU_COLS = ("question", "A", "B", "C", "D", "answer")


# ---------------------------------------------------------------- helpers


def _read(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def _write(path: Path, text: str) -> None:
    raw = text.encode("utf-8")
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def _lines_edit(fn: Callable[[list[str]], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.split("\n")
        fn(lines)
        return "\n".join(lines)

    return edit


def _insert(at: int, line: str) -> Callable[[str], str]:
    """Insert ``line`` so that it becomes (1-based) line ``at`` of the file."""
    return _lines_edit(lambda lines: lines.insert(at - 1, line))


def _replace_line(at: int, line: str) -> Callable[[str], str]:
    def fn(lines: list[str]) -> None:
        lines[at - 1] = line

    return _lines_edit(fn)


def _json_rename_in_row(index: int, old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        obj = json.loads(text)
        obj[index - 1][new] = obj[index - 1].pop(old)
        return json.dumps(obj)

    return edit


def _jsonl_rename_in_line(at: int, old: str, new: str) -> Callable[[str], str]:
    def fn(lines: list[str]) -> None:
        obj = json.loads(lines[at - 1])
        obj[new] = obj.pop(old)
        lines[at - 1] = json.dumps(obj)

    return _lines_edit(fn)


def _csv_rename_header(old: str, new: str) -> Callable[[str], str]:
    def fn(lines: list[str]) -> None:
        cols = lines[0].split(",")
        assert old in cols, f"{old} not in the header {cols}"
        lines[0] = ",".join(new if c == old else c for c in cols)

    return _lines_edit(fn)


def _dict_key_rename(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        obj = json.loads(text)
        obj[new] = obj.pop(old)
        return json.dumps(obj)

    return edit


def _dict_item(index: int, value: Any) -> Callable[[str], str]:
    def edit(text: str) -> str:
        obj = json.loads(text)
        obj["instructions"][index - 1] = value
        return json.dumps(obj)

    return edit


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


@dataclass(frozen=True)
class Kind:
    """One loader and the file it reads (relative to the data dir)."""

    name: str
    rel: str
    load: Callable[[Path], Any]


KINDS = {
    "xstest": Kind("xstest", "xstest/xstest_prompts.csv", lambda r: load_benchmark("xstest", root=r)),
    "or-bench": Kind("or-bench", "or-bench/or-bench-hard-1k.csv", lambda r: load_benchmark("or-bench", root=r)),
    "advbench": Kind("advbench", "advbench/harmful_behaviors.csv", lambda r: load_benchmark("advbench", root=r)),
    "mmlu-headerless": Kind("mmlu-headerless", "mmlu/dev/anatomy_dev.csv",
                            lambda r: readers.read_csv(r / "mmlu/dev/anatomy_dev.csv", MMLU_COLS, header=False)),
    "stl-cona": Kind("stl-cona", "safety-tuned-llamas/I-CoNa.json", lambda r: load_benchmark("cona", root=r)),
    "refusal-pairs": Kind("refusal-pairs", "safety-tuned-llamas/safety_only_data_Instructions.json",
                          load_refusal_pairs),
    "alpaca": Kind("alpaca", "alpaca/alpaca_instructions.json.gz", load_alpaca_instructions),
    "oktest": Kind("oktest", "oktest/OKTest.csv", lambda r: load_benchmark("oktest", root=r)),
    "alpaca-eval": Kind("alpaca-eval", "alpaca-eval/gpt4_outputs.json", load_alpaca_eval),
    "coconot": Kind("coconot", "coconot/coconot_contrast_eval.jsonl", lambda r: load_benchmark("coconot", root=r)),
    "hh-rlhf": Kind("hh-rlhf", "hh-rlhf/harmless-base-test.jsonl.gz", load_hh_harmful),
}

# (kind, case, corruption (None = delete the file), expected row or None, substring of the problem)
CASES: list[tuple[str, str, Callable[[str], str] | None, int | None, str]] = []
for _k in KINDS:
    CASES.append((_k, "missing", None, None, "file not found"))
    CASES.append((_k, "empty", lambda t: "", None, "empty"))
CASES += [
    # CSV with a header
    ("xstest", "wrong-column", _csv_rename_header("label", "labels"), None, "missing column"),
    ("xstest", "short-row", _insert(4, "999,a prompt with too few fields"), 4, "wrong number of fields"),
    ("xstest", "bad-label", _insert(5, "999,a prompt,homonyms,maybe,x,y"), 5, "not safe/unsafe"),
    ("xstest", "empty-value", _insert(6, "999,,homonyms,safe,x,y"), 6, "empty value"),
    ("or-bench", "wrong-column", _csv_rename_header("prompt", "question"), None, "missing column"),
    ("or-bench", "long-row", _insert(4, "a,b,c"), 4, "wrong number of fields"),
    ("or-bench", "unterminated-quote", _insert(7, '"an unterminated quote,deception'), 7, "malformed CSV"),
    ("advbench", "wrong-column", _csv_rename_header("goal", "goals"), None, "missing column"),
    ("advbench", "short-row", _insert(9, "only one field"), 9, "wrong number of fields"),
    # headerless CSV
    ("mmlu-headerless", "wrong-column", _insert(1, "q,a,b,c,d"), 1, "expected 6 columns"),
    ("mmlu-headerless", "long-row", _insert(3, "q,a,b,c,d,A,extra"), 3, "expected 6 columns"),
    # JSON dict of instructions
    ("stl-cona", "wrong-column", _dict_key_rename("instructions", "prompts"), None, "missing top-level field"),
    ("stl-cona", "bad-item", _dict_item(3, 42), 3, "not a string"),
    ("stl-cona", "empty-item", _dict_item(5, "  "), 5, "empty"),
    ("stl-cona", "bad-json", _truncate, -1, "not valid JSON"),
    # JSON list
    ("refusal-pairs", "wrong-column", _json_rename_in_row(5, "output", "response"), 5, "missing field 'output'"),
    ("refusal-pairs", "bad-json", _truncate, -1, "not valid JSON"),
    ("refusal-pairs", "not-a-list", lambda t: json.dumps({"rows": json.loads(t)}), None, "JSON list"),
    ("alpaca", "wrong-column", _json_rename_in_row(8, "instruction", "prompt"), 8, "missing field 'instruction'"),
    ("alpaca", "bad-json", _truncate, -1, "not valid JSON"),
    ("oktest", "wrong-column", _csv_rename_header("prompt", "text"), None, "missing column"),
    ("alpaca-eval", "wrong-column", _json_rename_in_row(12, "output", "answer"), 12, "missing field 'output'"),
    # JSONL
    ("coconot", "wrong-column", _jsonl_rename_in_line(7, "prompt", "question"), 7, "missing field 'prompt'"),
    ("coconot", "bad-line", _replace_line(5, '{"prompt": "unterminated'), 5, "not valid JSON"),
    ("coconot", "not-object", _replace_line(3, '["a", "list"]'), 3, "not a JSON object"),
    ("hh-rlhf", "wrong-column", _jsonl_rename_in_line(7, "chosen", "text"), 7, "missing field 'chosen'"),
    ("hh-rlhf", "bad-line", _replace_line(11, '{"chosen": '), 11, "not valid JSON"),
    ("hh-rlhf", "no-first-turn", _replace_line(2, json.dumps({"chosen": "no turns", "rejected": ""})), 2,
     "first turn"),
]


def _copy_dir(src_root: Path, dst_root: Path, rel: str) -> Path:
    sub = rel.split("/")[0]
    shutil.copytree(src_root / sub, dst_root / sub)
    return dst_root / rel


@pytest.mark.parametrize(("kind", "case", "corrupt", "row", "problem"), CASES,
                         ids=[f"{k}-{c}" for k, c, *_ in CASES])
def test_broken_file_raises_data_error(data_dir: Path, tmp_path: Path, kind: str, case: str,
                                       corrupt: Callable[[str], str] | None, row: int | None, problem: str) -> None:
    spec = KINDS[kind]
    target = _copy_dir(data_dir, tmp_path, spec.rel)
    spec.load(tmp_path)  # the intact copy loads: the error below comes from the corruption alone
    if corrupt is None:
        target.unlink()
    else:
        _write(target, corrupt(_read(target)))
    with pytest.raises(DataError) as exc:
        spec.load(tmp_path)
    msg = str(exc.value)
    assert str(target) in msg, msg
    assert problem in msg, msg
    assert "Fix: " in msg and msg.split("Fix: ", 1)[1].strip(), msg
    if row is None:
        assert exc.value.row is None, msg
    elif row == -1:  # some row (the JSON parser's line), whichever it is
        assert exc.value.row is not None and f"row {exc.value.row}" in msg, msg
    else:
        assert exc.value.row == row and f", row {row}:" in msg, msg


def test_corrupt_gzip_is_data_error(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_dir(data_dir, tmp_path, KINDS["hh-rlhf"].rel)
    target.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match="not a valid gzip file") as exc:
        load_hh_harmful(tmp_path)
    assert str(target) in str(exc.value)


def test_non_utf8_is_data_error(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_dir(data_dir, tmp_path, KINDS["advbench"].rel)
    target.write_bytes(target.read_bytes() + b"\xff\xfe broken,bytes\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_benchmark("advbench", root=tmp_path)


def test_header_only_csv_is_data_error(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_dir(data_dir, tmp_path, KINDS["or-bench"].rel)
    target.write_text("prompt,category\n", encoding="utf-8")
    with pytest.raises(DataError, match="no data rows"):
        load_benchmark("or-bench", root=tmp_path)


def test_csv_rows_are_not_split_at_unicode_line_breaks(tmp_path: Path) -> None:
    """MMLU has a \\x85 inside a question: str.splitlines() would cut that row in two."""
    path = tmp_path / "t.csv"
    path.write_text('q1 with \x85 inside,a,b,c,d,A\n"q2 quoted\u2028line",a,b,c,d,B\nq3\x0cff,a,b,c,d,C\n',
                    encoding="utf-8")
    rows = readers.read_csv(path, MMLU_COLS, header=False)
    assert [r["answer"] for r in rows] == ["A", "B", "C"]
    assert rows[0]["question"] == "q1 with \x85 inside"
    path.write_text("prompt,category\nhello \u2028 world,x\nbye,y\n", encoding="utf-8")
    rows = readers.read_csv(path, ("prompt",))
    assert [r["prompt"] for r in rows] == ["hello \u2028 world", "bye"]


def test_headerless_blank_lines_skipped_and_rows_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("q1,a,b,c,d,A\n\nq2,a,b,c,d,B\n\n", encoding="utf-8")
    assert [r["question"] for r in readers.read_csv(path, MMLU_COLS, header=False)] == ["q1", "q2"]
    path.write_text("q1,a,b,c,d,A\n\nq2,a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=", row 3: expected 6 columns, found 3"):
        readers.read_csv(path, MMLU_COLS, header=False)


def test_jsonl_loader_keeps_unicode_line_separators(data_dir: Path, tmp_path: Path) -> None:
    target = _copy_dir(data_dir, tmp_path, KINDS["coconot"].rel)
    lines = _read(target).split("\n")
    row = json.loads(lines[2])
    row["prompt"] = "first part\u2028second part\x85third"
    lines[2] = json.dumps(row, ensure_ascii=False)
    _write(target, "\n".join(lines))
    recs = load_benchmark("coconot", root=tmp_path)
    assert len(recs) == 379 and recs[2].prompt == "first part\u2028second part\x85third"


def test_real_mmlu_headerless_files_parse(data_dir: Path) -> None:
    total = sum(len(readers.read_csv(p, MMLU_COLS, header=False)) for p in (data_dir / "mmlu" / "test").glob("*.csv"))
    assert total == 14042


# ---------------------------------------------------------------- real data


def test_real_counts(data_dir: Path) -> None:
    xs = load_benchmark("xstest")
    assert len(xs) == 450
    assert Counter(r.label for r in xs) == {"safe": 250, "unsafe": 200}
    assert all(r.type.startswith("contrast") for r in xs if r.label == "unsafe")
    assert len(load_benchmark("xstest-safe")) == 250
    assert len(load_benchmark("xstest-unsafe")) == 200
    assert len(load_benchmark("coconot")) == 379
    assert len(load_benchmark("or-bench")) == 1319
    assert len(load_benchmark("oktest")) == 300
    per_set = {n: len(load_benchmark(n)) for n in SAFETY_SETS}
    assert per_set == {"malicious-instructions": 100, "cona": 178, "controversial": 40, "harmfulq": 100,
                       "advbench": 520}
    pooled = load_benchmark("safety")
    assert len(pooled) == sum(per_set.values()) == 938
    assert {r.label for r in pooled} == {"unsafe"}
    assert len({r.id for r in pooled}) == 938
    hh = load_hh_harmful()
    assert len(hh) == 2178 and len({r.prompt for r in hh}) == 2178
    assert all(r.prompt.strip() and "Human:" not in r.prompt for r in hh)
    pairs = load_refusal_pairs()
    assert len(pairs) == 2483 and all(p.response for p in pairs)
    assert len(load_alpaca_instructions()) == 31323
    assert len(load_alpaca_eval()) == 805


def test_alpaca_eval_leaves_out_empty_reference_outputs_only(data_dir: Path, tmp_path: Path) -> None:
    davinci = load_alpaca_eval(reference="text_davinci_003")
    ids = [p.id for p in davinci]
    assert len(davinci) == 803 and "alpaca-eval-247" not in ids and "alpaca-eval-504" not in ids
    assert ids[246:248] == ["alpaca-eval-246", "alpaca-eval-248"]  # the other rows keep their ids
    (tmp_path / "alpaca-eval").mkdir()
    bad = tmp_path / "alpaca-eval" / "gpt4_outputs.json"
    bad.write_text(json.dumps([{"instruction": "Hi", "output": ""}, {"instruction": "Yo", "output": None}]))
    with pytest.raises(DataError, match="row 2: field 'output' is empty or not a string"):
        load_alpaca_eval(tmp_path)


def test_records_have_unique_ids_and_nonempty_prompts(data_dir: Path) -> None:
    for name in ("xstest", "coconot", "or-bench", "oktest", "advbench", "cona"):
        recs = load_benchmark(name)
        assert len({r.id for r in recs}) == len(recs), name
        assert all(r.prompt.strip() for r in recs), name
        assert all(r.source for r in recs), name


def test_phtest_is_missing_with_reason(data_dir: Path) -> None:
    with pytest.raises(BenchmarkMissing) as exc:
        load_benchmark("phtest")
    assert exc.value.name == "phtest"
    assert "furonghuang-lab/PHTest" in exc.value.reason and "Fix" in exc.value.reason


def test_unknown_benchmark(data_dir: Path) -> None:
    with pytest.raises(DcrError, match="unknown benchmark 'nope'.*xstest"):
        load_benchmark("nope")


# ---------------------------------------------------------------- data dir


def test_data_dir_precedence_explicit_env_vendored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == VENDORED  # neither given: the copy vendored with dcr
    assert len(load_benchmark("xstest")) == 450
    monkeypatch.setenv("DCR_DATA_DIR", "")  # empty counts as unset
    assert resolve_data_dir() == VENDORED
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DcrError, match=f"{missing} \\(from --data-dir\\) does not exist"):
        resolve_data_dir(missing)
    monkeypatch.setenv("DCR_DATA_DIR", str(missing))
    with pytest.raises(DcrError, match="from DCR_DATA_DIR\\) does not exist"):
        resolve_data_dir()
    monkeypatch.setenv("DCR_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path  # the environment beats the vendored copy
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(other) == other  # explicit beats the environment


def test_missing_vendored_copy_says_reinstall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dcr.data.registry as registry
    import dcr.datadir as datadir

    monkeypatch.delenv("DCR_DATA_DIR", raising=False)
    monkeypatch.setattr(datadir, "VENDORED", tmp_path / "gone")
    with pytest.raises(DcrError, match="vendored data directory .* is missing.*reinstall dcr"):
        registry.data_dir()


# ---------------------------------------------------------------- subsample and split


def test_subsample_seeded_and_stable(data_dir: Path) -> None:
    recs = load_benchmark("or-bench")
    a = subsample(recs, 50, seed=3)
    assert len(a) == 50
    assert [r.id for r in a] == [r.id for r in subsample(recs, 50, seed=3)]
    assert [r.id for r in a] != [r.id for r in subsample(recs, 50, seed=4)]
    order = {r.id: i for i, r in enumerate(recs)}
    assert [order[r.id] for r in a] == sorted(order[r.id] for r in a)  # original order kept
    assert [r.id for r in load_benchmark("or-bench", limit=50, seed=3)] == [r.id for r in a]
    assert subsample(recs, None) == recs
    assert subsample(recs, len(recs) + 5) == recs
    with pytest.raises(DcrError, match="limit"):
        subsample(recs, 0)


def test_xstest_split(data_dir: Path) -> None:
    safe = load_benchmark("xstest-safe")
    ind, held = xstest_split(0.2, seed=0)
    ind_ids, held_ids = {r.id for r in ind}, {r.id for r in held}
    assert not ind_ids & held_ids
    assert ind_ids | held_ids == {r.id for r in safe}
    assert len(ind) + len(held) == 250
    by_type = Counter(r.type for r in safe)
    held_by_type = Counter(r.type for r in held)
    assert len(by_type) > 1
    for typ, n in by_type.items():
        assert held_by_type[typ] == round(n * 0.2), typ  # stratified
    again = xstest_split(0.2, seed=0)
    assert [r.id for r in again[1]] == [r.id for r in held]
    # the default split's parts are prompt sets of their own (for probes of held-out prompts)
    assert [r.id for r in load_benchmark("xstest-safe-heldout")] == [r.id for r in held]
    assert [r.id for r in load_benchmark("xstest-safe-indist")] == [r.id for r in ind]
    hh = load_benchmark("hh-rlhf")  # refine's toxic pool, as a prompt set for probes
    assert len(hh) == 2178 and hh[0].id == "hh-0" and {r.label for r in hh} == {"unsafe"}
    assert {r.id for r in xstest_split(0.2, seed=1)[1]} != held_ids
    none_held = xstest_split(0.0, seed=0)
    assert len(none_held[0]) == 250 and none_held[1] == []
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="heldout_frac"):
            xstest_split(bad)
