"""Length-rebalanced micro-batches (``AlignConfig.sampling``): same optimizer steps as a shuffle, less padding."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dcr.align import AlignConfig, align
from dcr.align.train import rebalance_sampler
from dcr.config import config_hash, keyed_dict


def _args(micro: int, accum: int, seed: int = 0, world: int = 1, rank: int = 0) -> Any:
    return SimpleNamespace(train_batch_size=micro, gradient_accumulation_steps=accum, world_size=world,
                           process_index=rank, seed=seed, dataloader_drop_last=False)


def _data(n: int = 32) -> list[dict[str, list[int]]]:
    return [{"input_ids": [1] * (8 if i % 2 else 64 + i)} for i in range(n)]  # short and long examples mixed


def _steps(sampler: Any, accum: int) -> list[list[list[int]]]:
    batches = list(sampler)
    return [batches[i:i + accum] for i in range(0, len(batches), accum)]


def test_each_epoch_is_a_seeded_partition_into_steps() -> None:
    data = _data()
    sampler = rebalance_sampler(data, _args(micro=4, accum=2))
    first = _steps(sampler, 2)
    assert len(first) == 4 and all(sum(len(mb) for mb in step) == 8 for step in first)
    assert sorted(i for step in first for mb in step for i in mb) == list(range(32))
    sampler.set_epoch(1)
    assert _steps(sampler, 2) != first  # a new order every epoch
    other = _steps(rebalance_sampler(data, _args(micro=4, accum=2, seed=1)), 2)
    assert other != first  # and every seed
    again = _steps(rebalance_sampler(data, _args(micro=4, accum=2)), 2)
    assert again == first


def _padded(micro_batches: list[list[int]], data: list[dict[str, list[int]]]) -> int:
    return sum(len(mb) * max(len(data[i]["input_ids"]) for i in mb) for mb in micro_batches if mb)


def test_same_step_sets_with_less_padding() -> None:
    data = _data()
    steps = _steps(rebalance_sampler(data, _args(micro=4, accum=2)), 2)
    flat = [[i for mb in step for i in mb] for step in steps]
    # the same step sets cut in shuffle order (two micro-batches of 4) pad more
    shuffled = _padded([s[:4] for s in flat] + [s[4:] for s in flat], data)
    assert _padded([mb for step in steps for mb in step], data) < shuffled
    for step in steps:  # each micro-batch is a contiguous run of the step's lengths sorted
        lo, hi = sorted(([len(data[i]["input_ids"]) for i in mb] for mb in step), key=min)
        assert max(lo) <= min(hi)


def test_two_ranks_split_each_step() -> None:
    data = _data()
    single = list(rebalance_sampler(data, _args(micro=4, accum=1)))
    r0 = list(rebalance_sampler(data, _args(micro=2, accum=1, world=2, rank=0)))
    r1 = list(rebalance_sampler(data, _args(micro=2, accum=1, world=2, rank=1)))
    # two processes with micro-batch 2 share out exactly the steps one process with micro-batch 4 takes
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in single]


def test_legacy_value_keeps_old_keys() -> None:
    new = AlignConfig(model="m")
    old = AlignConfig(model="m", sampling="random")
    assert "sampling" not in keyed_dict(old) and keyed_dict(new)["sampling"] == "rebalance"
    assert config_hash(old) != config_hash(new)
    with pytest.raises(Exception, match="sampling must be one of rebalance, random"):
        AlignConfig(model="m", sampling="sorted")


def _losses(out: Path) -> list[float]:
    import csv

    with open(out / "train_log.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh) if r.get("loss")]


def test_splitting_a_step_by_length_leaves_the_curve(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """One micro-batch of 4 per step against two length-rebalanced micro-batches of the same 4 examples."""
    gen = tmp_path / "general.jsonl"
    gen.write_text("".join(json.dumps({"prompt": f"add {i} and 1", "response": f"{i + 1} " * (1 + 5 * (i % 2))})
                           + "\n" for i in range(8)))
    kw: dict[str, Any] = dict(model=str(tiny_dir), data_dir=str(data_dir), general_file=str(gen), n_general=8,
                              n_safety=8, epochs=1, max_length=96, lr=5e-3, track_every=0, save_every=100,
                              dtype="fp32", lora_dropout=0.0, teacher_max_new_tokens=4)
    whole = align(AlignConfig(micro_batch=4, grad_accum=1, **kw), tmp_path / "whole")
    split = align(AlignConfig(micro_batch=2, grad_accum=2, **kw), tmp_path / "split")
    assert len(_losses(whole)) == 4
    assert _losses(split) == pytest.approx(_losses(whole), abs=1e-5)
