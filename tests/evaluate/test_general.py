"""General-ability loaders (validation, missing files) and the option scorer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dcr.data import BenchmarkMissing
from dcr.errors import DataError
from dcr.evaluate import general
from dcr.evaluate.general import MCItem, heldout_nll, load_general, mc_metrics, run_general, score_items
from dcr.scoring import continuation_logprobs


@pytest.mark.parametrize("name,count,options", [
    ("arc-easy", 2376, 4), ("arc-challenge", 1172, 4), ("openbookqa", 500, 4), ("piqa", 1838, 2), ("mmlu", 14042, 4),
])
def test_offline_files_load_with_paper_counts(data_dir: Path, name: str, count: int, options: int) -> None:
    items = load_general(name, data_dir)
    assert len(items) == count
    assert all(len(it.options) == options and 0 <= it.gold < options for it in items)
    assert len({it.id for it in items}) == count


def test_mmlu_prompt_is_lm_eval_style(data_dir: Path) -> None:
    first = load_general("mmlu", data_dir)[0]
    assert first.group == "abstract_algebra" and first.options == (" A", " B", " C", " D") and first.gold == 1
    assert first.context.startswith("The following are multiple choice questions (with answers) about abstract "
                                    "algebra.\n\nFind the degree for the given field extension")
    assert first.context.endswith("\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    five = load_general("mmlu", data_dir, shots=5)[0]
    assert five.context.count("Answer:") == 6 and five.context.endswith(first.context.split("\n\n", 1)[1])


def test_arc_and_piqa_contexts(data_dir: Path) -> None:
    arc = load_general("arc-easy", data_dir)[0]
    assert arc.context.startswith("Question: Which statement") and arc.context.endswith("\nAnswer:")
    assert arc.options[0].startswith(" Sunlight")
    piqa = load_general("piqa", data_dir)[0]
    assert piqa.context.startswith("Question: How do I ready a guinea pig cage") and piqa.gold == 0


def test_missing_files_are_benchmark_missing(tmp_path: Path) -> None:
    for name in ("mmlu", "arc-easy", "openbookqa", "piqa"):
        with pytest.raises(BenchmarkMissing, match="not found"):
            load_general(name, tmp_path)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_malformed_rows_name_file_and_row(tmp_path: Path) -> None:
    good = {"query": "Question: q?", "choices": ["a", "b"], "gold": 1}
    _write(tmp_path / "arc" / "arc_easy_test.jsonl", json.dumps(good) + "\n" + json.dumps({**good, "gold": 2}) + "\n")
    with pytest.raises(DataError, match=r"arc_easy_test.jsonl, row 2: 'gold' must be an index"):
        load_general("arc-easy", tmp_path)
    _write(tmp_path / "mmlu" / "test" / "x_test.csv", "q,a,b,c,d,A\nq2,a,b,c,d,E\n")
    with pytest.raises(DataError, match=r"x_test.csv, row 2: answer 'E'"):
        load_general("mmlu", tmp_path)
    _write(tmp_path / "piqa" / "valid.jsonl", json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}) + "\n")
    _write(tmp_path / "piqa" / "valid-labels.lst", "0\n1\n")
    with pytest.raises(DataError, match="2 labels for 1 rows"):
        load_general("piqa", tmp_path)


def test_score_items_matches_unbatched_scoring(tiny) -> None:
    model, tok = tiny
    items = [MCItem("a", "Question: 2+2?\nAnswer:", (" 4", " five", " a long wrong answer"), 0),
             MCItem("b", "Sky colour:", (" blue", " green"), 1)]
    got = score_items(model, tok, items, batch_size=2)
    for it, row in zip(items, got):
        want = continuation_logprobs(model, tok, [it.context] * len(it.options), list(it.options), batch_size=1)
        assert row == pytest.approx(want.tolist(), rel=1e-5)


def test_mc_metrics_acc_norm_only_for_text_options() -> None:
    items = [MCItem("a", "c", (" x", " yyyyyyy"), 1)]
    scores = [[-2.0, -3.0]]
    arc = {m.metric: m.value for m in mc_metrics("arc-easy", items, scores)}
    assert arc == {"accuracy": 0.0, "acc_norm": 1.0}
    assert [m.metric for m in mc_metrics("mmlu", items, scores)] == ["accuracy"]


def test_run_general_caches_scores(tiny, data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    model, tok = tiny
    cache = tmp_path / "scores.jsonl"
    first, _ = run_general("piqa", model, tok, data_dir, limit=3, seed=1, shots=0, batch_size=4, cache=cache)
    monkeypatch.setattr(general, "score_items", lambda *a, **k: pytest.fail("re-scored a cached item"))
    again, _ = run_general("piqa", model, tok, data_dir, limit=3, seed=1, shots=0, batch_size=4, cache=cache)
    assert first == again and first[0].n == 3


def test_heldout_nll_on_tiny(tiny, data_dir: Path) -> None:
    model, tok = tiny
    metrics, detail = heldout_nll(model, tok, data_dir, n=2, seed=0, max_tokens=12, batch_size=2)
    (m,) = metrics
    assert m.metric == "nll_per_token" and m.n == 2 and detail["tokens"] <= 24
    assert math.isfinite(m.value) and 0 < m.value < 20  # a random 128-token model: about ln(128) = 4.85
