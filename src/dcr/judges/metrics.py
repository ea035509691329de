"""Agreement of a binary judge with human labels: accuracy, precision/recall/F1 for refusal, Cohen's kappa.

Every metric comes with a 95% percentile-bootstrap confidence interval over rows. With several strata (one
per model file) the resampling is *stratified*: each stratum is resampled within itself and the strata are
pooled, so every bootstrap sample keeps each model's share of rows.

Conventions: ``human`` and ``judge`` are booleans, True = refusal. A metric whose denominator is zero
(precision with no predicted refusals, kappa when both raters are constant) is ``nan`` and reported as
``None`` in JSON; intervals ignore the resamples where it is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRICS = ("agreement", "precision", "recall", "f1", "kappa")


def _rates(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """The five metrics from confusion counts (arrays broadcast, so one call scores every resample)."""
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    table = np.stack(np.broadcast_arrays(tp, fn, fp, tn), axis=-1).reshape(*np.broadcast(tp, fn, fp, tn).shape, 2, 2)
    agreement, kappa = _kappa_from_counts(table)  # rows: human refusal / not; columns: judge
    return {"agreement": agreement, "precision": precision, "recall": recall, "f1": f1, "kappa": kappa}


def confusion(human: Sequence[bool], judge: Sequence[bool]) -> dict[str, int]:
    """``{"tp", "fp", "fn", "tn"}`` with refusal as the positive class."""
    h, j = np.asarray(human, dtype=bool), np.asarray(judge, dtype=bool)
    if h.shape != j.shape:
        raise ValueError(f"human and judge differ in length: {h.size} vs {j.size}")
    return {"tp": int(np.sum(h & j)), "fp": int(np.sum(~h & j)), "fn": int(np.sum(h & ~j)),
            "tn": int(np.sum(~h & ~j))}


def point_metrics(human: Sequence[bool], judge: Sequence[bool]) -> dict[str, float]:
    """The five metrics (``nan`` where undefined) of one judge against one set of human labels."""
    c = confusion(human, judge)
    return {k: float(v) for k, v in _rates(c["tp"], c["fp"], c["fn"], c["tn"]).items()}


def _cells(human: np.ndarray, judge: np.ndarray) -> np.ndarray:
    """Each row's confusion cell: 0 tp, 1 fp, 2 fn, 3 tn."""
    return np.where(human, np.where(judge, 0, 2), np.where(judge, 1, 3))


def _resampled_counts(cells: Sequence[np.ndarray], strata: np.ndarray, resamples: int,
                      rng: np.random.Generator) -> list[np.ndarray]:
    """Per cell array, (resamples, 4) confusion counts of the *same* stratified bootstrap samples (paired)."""
    totals = [np.zeros((resamples, 4), dtype=np.int64) for _ in cells]
    for s in np.unique(strata):
        rows = np.flatnonzero(strata == s)
        idx = rows[rng.integers(0, rows.size, size=(resamples, rows.size))]
        for total, c in zip(totals, cells):
            picked = c[idx]
            for cell in range(4):
                total[:, cell] += np.sum(picked == cell, axis=1)
    return totals


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not values.size:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _prepare(human: Sequence[bool], judges: Sequence[Sequence[bool]],
             strata: Sequence[str] | None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    h = np.asarray(human, dtype=bool)
    js = [np.asarray(j, dtype=bool) for j in judges]
    if h.size == 0 or any(j.shape != h.shape for j in js):
        raise ValueError(f"need equally long, non-empty label lists, got {h.size} and {[j.size for j in js]}")
    groups = np.asarray(strata if strata is not None else [""] * h.size)
    if groups.shape != h.shape:
        raise ValueError(f"strata has {groups.size} entries for {h.size} rows")
    return h, js, groups


def bootstrap_metrics(human: Sequence[bool], judge: Sequence[bool], strata: Sequence[str] | None = None,
                      resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, dict[str, float]]:
    """``{metric: {"value", "low", "high"}}``: point estimate and percentile-bootstrap interval.

    ``strata`` (e.g. the model of each row) makes the resampling stratified; None = one stratum.
    """
    h, (j,), groups = _prepare(human, [judge], strata)
    point = point_metrics(h, j)
    boot: dict[str, np.ndarray] = {}
    if resamples > 0:
        (counts,) = _resampled_counts([_cells(h, j)], groups, resamples, np.random.default_rng(seed))
        boot = _rates(counts[:, 0], counts[:, 1], counts[:, 2], counts[:, 3])
    out = {}
    for name in METRICS:
        low, high = _interval(boot[name], level) if boot else (math.nan, math.nan)
        out[name] = {"value": point[name], "low": low, "high": high}
    return out


def paired_difference(human: Sequence[bool], judge_a: Sequence[bool], judge_b: Sequence[bool],
                      strata: Sequence[str] | None = None, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, dict[str, float]]:
    """``{metric: {"value", "low", "high"}}`` of ``a - b``, both judges scored on the same bootstrap samples.

    An interval above 0 means judge ``a`` beats ``b`` on that metric beyond resampling noise.
    """
    h, (a, b), groups = _prepare(human, [judge_a, judge_b], strata)
    pa, pb = point_metrics(h, a), point_metrics(h, b)
    boots = []
    if resamples > 0:
        counts = _resampled_counts([_cells(h, a), _cells(h, b)], groups, resamples, np.random.default_rng(seed))
        boots = [_rates(c[:, 0], c[:, 1], c[:, 2], c[:, 3]) for c in counts]
    out = {}
    for name in METRICS:
        low, high = _interval(boots[0][name] - boots[1][name], level) if boots else (math.nan, math.nan)
        out[name] = {"value": pa[name] - pb[name], "low": low, "high": high}
    return out


def _kappa_from_counts(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agreement, Cohen's kappa) from ``(..., k, k)`` contingency counts (rows: rater a, columns: rater b)."""
    n = table.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(table, axis1=-2, axis2=-1) / n
        expected = np.sum(table.sum(axis=-1) * table.sum(axis=-2), axis=-1) / (n * n)
        kappa = np.where(np.isclose(expected, 1.0), np.nan, (observed - expected) / (1 - expected))
    return observed, kappa


def label_agreement(a: Sequence[str], b: Sequence[str], resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> dict[str, dict[str, float]]:
    """``{"agreement" | "kappa": {"value", "low", "high"}}`` of two raters' categorical labels (any number of
    classes, e.g. compliance / refusal / degenerate): the share of equal labels and Cohen's kappa, with a
    percentile-bootstrap interval over items (one resampling scores both)."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need equally long, non-empty label lists, got {len(a)} and {len(b)}")
    classes = sorted(set(a) | set(b))
    ia = np.array([classes.index(x) for x in a])
    ib = np.array([classes.index(x) for x in b])
    k = len(classes)
    point = np.zeros((k, k))
    np.add.at(point, (ia, ib), 1)
    values = _kappa_from_counts(point)
    boot = None
    if resamples > 0:
        idx = np.random.default_rng(seed).integers(0, ia.size, size=(resamples, ia.size))
        tables = np.zeros((resamples, k, k))
        np.add.at(tables, (np.arange(resamples)[:, None], ia[idx], ib[idx]), 1)
        boot = _kappa_from_counts(tables)
    out = {}
    for i, name in enumerate(("agreement", "kappa")):
        low, high = _interval(boot[i], level) if boot is not None else (math.nan, math.nan)
        out[name] = {"value": float(values[i]), "low": low, "high": high}
    return out


def json_number(x: float, digits: int = 4) -> float | None:
    """Round for JSON; ``nan`` -> None."""
    return None if x is None or math.isnan(x) else round(float(x), digits)


def rounded(metrics: dict[str, dict[str, float]], digits: int = 4) -> dict[str, dict[str, float | None]]:
    """``bootstrap_metrics`` output rounded, ``nan`` as None (JSON-ready)."""
    return {m: {k: json_number(v, digits) for k, v in d.items()} for m, d in metrics.items()}


def fmt(entry: dict[str, float | None], digits: int = 3) -> str:
    """``0.942 [0.920, 0.962]``; ``n/a`` when undefined."""
    if entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("low") is not None and entry.get("high") is not None:
        text += f" [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"
    return text
