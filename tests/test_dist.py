"""dcr.dist: the chunk sharding that multi-process evaluation scores with, checked rank by rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dcr import dist


def _chunked(calls: list[list[int]], chunk: int) -> Callable[[list[int]], list[int]]:
    """An fn that works chunk by chunk, as the scorers do, and records the chunks it ran."""
    def fn(xs: list[int]) -> list[int]:
        for s in range(0, len(xs), chunk):
            calls.append(xs[s:s + chunk])
        return [x * 10 for x in xs]
    return fn


def test_one_process_runs_fn_on_everything() -> None:
    calls: list[list[int]] = []
    assert dist.shard_chunks(_chunked(calls, 3), range(7), 3) == [x * 10 for x in range(7)]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize(("n", "chunk", "world"), [(7, 3, 2), (10, 3, 2), (6, 3, 2), (2, 3, 2), (11, 2, 3),
                                                   (0, 4, 2)])
def test_ranks_run_the_planned_chunks_and_all_get_every_result(monkeypatch: pytest.MonkeyPatch, n: int, chunk: int,
                                                               world: int) -> None:
    """Rank r runs chunks r, r + world, ...: together exactly one process's chunks; gathered, every rank has all
    results in input order (the last, short chunk included)."""
    items = list(range(100, 100 + n))
    sent: dict[int, list[Any]] = {}
    calls: dict[int, list[list[int]]] = {}
    monkeypatch.setattr(dist, "world_size", lambda: world)
    for r in reversed(range(world)):  # the others first: rank 0's gather returns what they sent
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        calls[r] = []

        def gather(pieces: list[Any], r: int = r) -> list[Any]:
            sent[r] = pieces
            return [p for k in range(world) for p in sent.get(k, [])]

        monkeypatch.setattr(dist, "gather", gather)
        got = dist.shard_chunks(_chunked(calls[r], chunk), items, chunk)
    assert got == [x * 10 for x in items]
    planned = [items[s:s + chunk] for s in range(0, n, chunk)]
    assert sorted(c for r in calls for c in calls[r]) == sorted(planned)
    assert all(calls[r] == planned[r::world] for r in calls)


def test_a_wrong_length_result_or_chunk_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        dist.shard_chunks(lambda xs: xs, [1], 0)
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 0)
    with pytest.raises(ValueError, match="returned 1 results for 2 items"):
        dist.shard_chunks(lambda xs: xs[:1], [1, 2, 3], 2)
