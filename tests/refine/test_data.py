"""Refinement data: the split, disjoint toxic sets, the cap per class, and the balanced batch sampler."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcr.data import xstest_split
from dcr.refine.data import SEEMINGLY, TOXIC, balanced_batches, batch_counts, build_data, steps_per_epoch


def test_every_batch_holds_both_classes_without_duplicates() -> None:
    labels = [SEEMINGLY] * 10 + [TOXIC] * 20
    batches = balanced_batches(labels, batch_size=8, seemingly_frac=0.5, num_batches=12, seed=3)
    assert len(batches) == 12
    for b in batches:
        ys = [labels[i] for i in b]
        assert ys.count(SEEMINGLY) == 4 and ys.count(TOXIC) == 4
        assert len(set(b)) == len(b)
    seen = [i for b in batches[:5] for i in b if labels[i] == TOXIC]  # 5 batches * 4 = all 20 toxic once
    assert sorted(seen) == list(range(10, 30))
    assert batches == balanced_batches(labels, 8, 0.5, 12, seed=3)
    assert batches != balanced_batches(labels, 8, 0.5, 12, seed=4)


def test_batch_counts_keep_two_of_each_class() -> None:
    assert batch_counts(32, 0.5, 100, 100) == (16, 16)
    assert batch_counts(8, 0.05, 100, 100) == (2, 6)
    assert batch_counts(8, 0.95, 100, 100) == (6, 2)
    assert batch_counts(32, 0.5, 3, 100) == (3, 16)  # capped by the class size
    assert steps_per_epoch(65, 32) == 3


def test_sampler_needs_two_per_class() -> None:
    with pytest.raises(ValueError, match="2 prompts per class"):
        balanced_batches([0, 1, 1], 4, 0.5, 1, 0)


def test_build_data_split_is_disjoint_and_capped(data_dir: Path) -> None:
    in_dist, held = xstest_split(0.2, 0, data_dir)
    data = build_data(str(data_dir), 0.2, 0, seed=0, toxic_ratio=2.0, limit=None, eval_toxic="both")
    assert len(data.seemingly) == len(in_dist) and len(data.toxic) == 2 * len(in_dist)
    assert {r.id for r in data.heldout} == {r.id for r in held}
    assert not {r.id for r in data.seemingly} & {r.id for r in data.heldout}
    assert not {r.id for r in data.toxic} & {r.id for r in data.eval_toxic["hh"]}
    assert len(data.eval_toxic["hh"]) == len(held) == len(data.eval_toxic["xstest-unsafe"])
    assert all(r.label == "unsafe" for r in data.eval_toxic["xstest-unsafe"])
    split = data.split_json()
    assert set(split) >= {"heldout_ids", "train_seemingly_ids", "toxic_ids", "toxic_prompts"}
    assert split["toxic_prompts"] == [r.prompt for r in data.toxic]
    small = build_data(str(data_dir), 0.2, 0, seed=0, toxic_ratio=2.0, limit=16, eval_toxic="hh")
    assert len(small.seemingly) == 16 and len(small.toxic) == 16
    assert {r.id for r in small.seemingly} <= {r.id for r in in_dist}
    assert [r.id for r in small.eval_toxic["hh"]] == [r.id for r in data.eval_toxic["hh"]]  # independent of limit
