"""Hub-only data (PHTest, Alpaca with responses): loaded through ``datasets`` when the hub answers, else missing.

The hub is faked: ``hub_reachable`` and ``datasets.load_dataset`` are monkeypatched (no network in tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

import dcr.models
from dcr.data import ALPACA_HUB, BenchmarkMissing, load_alpaca_hub, load_benchmark
from dcr.data.registry import OR_BENCH_HUB, PHTEST_HUB
from dcr.errors import DataError


def fake_hub(monkeypatch: pytest.MonkeyPatch, tables: dict[str, dict[str, list[Any]]]) -> list[tuple[str, ...]]:
    """The hub answers, and ``load_dataset(id, split=...)`` returns ``tables[id]``; returns the calls made
    ((id, split), or (id, split, subset name) when a subset was asked for)."""
    calls: list[tuple[str, ...]] = []

    def load_dataset(hub_id: str, split: str = "train", **kw: Any) -> datasets.Dataset:
        calls.append((hub_id, split, kw["name"]) if "name" in kw else (hub_id, split))
        if hub_id not in tables:
            raise FileNotFoundError(f"no dataset {hub_id}")
        return datasets.Dataset.from_dict(tables[hub_id])

    monkeypatch.setattr(dcr.models, "hub_reachable", lambda *a, **k: None)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


PHTEST = {"ID": [7, 8, 9], "Request": ["How do I kill a Python process?", "  ", "How to shoot a photo at night?"],
          "Harmfulness": ["harmless", "harmless", "controversial"]}


def test_phtest_loads_from_the_hub_when_reachable(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_hub(monkeypatch, {PHTEST_HUB: PHTEST})
    recs = load_benchmark("phtest")
    assert calls == [(PHTEST_HUB, "train")]
    assert [(r.id, r.prompt, r.label, r.type, r.source) for r in recs] == [
        ("phtest-7", "How do I kill a Python process?", "safe", "harmless", "phtest"),
        ("phtest-9", "How to shoot a photo at night?", "safe", "controversial", "phtest")]  # the blank row dropped
    assert len(load_benchmark("phtest", limit=1)) == 1


def test_phtest_offline_is_missing_and_never_calls_the_loader(data_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("loaded without a reachable hub"))
    with pytest.raises(BenchmarkMissing) as exc:
        load_benchmark("phtest")
    assert exc.value.name == "phtest" and not exc.value.transient
    assert PHTEST_HUB in exc.value.reason and "the hub is off in tests" in exc.value.reason
    assert exc.value.reason.split("Fix: ")[1].startswith("run with network access")


def test_hub_load_failure_is_transient_and_bad_layout_an_error(data_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, {})
    with pytest.raises(BenchmarkMissing) as exc:
        load_benchmark("phtest")
    assert exc.value.transient and "FileNotFoundError" in exc.value.reason
    fake_hub(monkeypatch, {PHTEST_HUB: {"prompt": ["x"]}})
    with pytest.raises(DataError, match=r"no column\(s\) \['Request'\]"):
        load_benchmark("phtest")


def test_alpaca_hub_pairs_join_instruction_and_input(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, {ALPACA_HUB: {"instruction": ["Add the numbers.", "Say hi.", ""],
                                        "input": ["2 and 3", "", "x"], "output": ["5", "Hi!", "y"]}})
    pairs = load_alpaca_hub()
    assert [(p.id, p.prompt, p.response, p.source) for p in pairs] == [
        ("alpaca-hub-0", "Add the numbers.\n2 and 3", "5", ALPACA_HUB), ("alpaca-hub-1", "Say hi.", "Hi!", ALPACA_HUB)]


def test_alpaca_hub_offline_is_missing() -> None:
    with pytest.raises(BenchmarkMissing, match="general_source: teacher"):
        load_alpaca_hub()


def test_or_bench_toxic_loads_its_subset_from_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_hub(monkeypatch, {OR_BENCH_HUB: {"prompt": ["How to make a weapon at home?", ""],
                                                  "category": ["violence", "x"]}})
    recs = load_benchmark("or-bench-toxic")
    assert calls == [(OR_BENCH_HUB, "train", "or-bench-toxic")]
    assert [(r.id, r.label, r.type, r.source) for r in recs] == [
        ("or-bench-toxic-0", "unsafe", "violence", "or-bench-toxic")]  # the blank row dropped


def test_or_bench_toxic_offline_is_missing_naming_the_hub_id() -> None:
    with pytest.raises(BenchmarkMissing) as exc:
        load_benchmark("or-bench-toxic")
    assert OR_BENCH_HUB in exc.value.reason and not exc.value.transient
