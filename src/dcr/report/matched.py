"""Compliance at matched safety: each method's compliance at the defense-success level both reach during STL.

DCR may shift the trade-off instead of improving it, so the end points of Table 1 alone cannot say which. The
tracked checkpoints of the align stages (Fig. 4) give, per method, defense success d (refusal rate on toxic probes)
and compliance c (1 - refusal rate on seemingly toxic probes) over training steps, averaged over seeds. At the
level L = the smaller of the two methods' highest d, each method's compliance is read at the first checkpoint
reaching L, linearly interpolated from the checkpoint before it.

The interval is a parametric bootstrap: every tracked rate of every seed is redrawn as Binomial(n, rate) / n
(n = the probes of its group), and the level and both compliances are read again from the redrawn mean curves.
It covers the sampling noise of the probes at each checkpoint; it treats checkpoints as independent although
they share their probes, and it does not cover the choice of checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dcr.report import figures
from dcr.report.render import Para, Table


def _steps(curve: figures.Curve) -> list[int]:
    """The tracked steps with both toxic and seemingly toxic probes, in training order."""
    return [s for s in sorted(curve) if {"toxic", "seemingly_toxic"} <= set(curve[s])]


def trajectory(curve: figures.Curve) -> list[tuple[float, float]]:
    """(defense success, compliance) at every tracked step, in training order."""
    return [(curve[s]["toxic"]["refusal_rate"], 1.0 - curve[s]["seemingly_toxic"]["refusal_rate"])
            for s in _steps(curve)]


def compliance_at(points: list[tuple[float, float]], level: float) -> float | None:
    """Compliance where defense success first reaches ``level`` (interpolated); None if it never does."""
    for k, (d, c) in enumerate(points):
        if d >= level:
            if k == 0:
                return c
            d0, c0 = points[k - 1]
            return c0 + (level - d0) / (d - d0) * (c - c0) if d > d0 else c
    return None


def first_step(curve: figures.Curve, level: float) -> int | None:
    """The first tracked step whose defense success reaches ``level`` (None if none does). Step 0 is the model STL
    starts from: for DCR + STL, the refined model before any STL."""
    return next((s for s in _steps(curve) if curve[s]["toxic"]["refusal_rate"] >= level), None)


def _reached(mean_a: figures.Curve, mean_b: figures.Curve, level: float) -> str:
    """The first step at the level of each method, as ``A / B``, noting when either is step 0 (a start model)."""
    marks = [first_step(c, level) for c in (mean_a, mean_b)]
    text = " / ".join("—" if s is None else str(s) for s in marks)
    return text + (" (at step 0: compared before any STL step)" if 0 in marks else "")


def matched(curve_a: figures.Curve, curve_b: figures.Curve) -> tuple[float, float, float] | None:
    """(level both reach, compliance of a, compliance of b) at matched defense success; None if not defined."""
    pa, pb = trajectory(curve_a), trajectory(curve_b)
    if not pa or not pb:
        return None
    level = min(max(d for d, _ in pa), max(d for d, _ in pb))
    ca, cb = compliance_at(pa, level), compliance_at(pb, level)
    return None if ca is None or cb is None else (level, ca, cb)


def _redraw(curve: figures.Curve, rng: np.random.Generator) -> figures.Curve:
    """The curve with each toxic / seemingly toxic refusal rate redrawn as Binomial(n, rate) / n."""
    out: figures.Curve = {}
    for step, groups in curve.items():
        out[step] = {g: ({**v, "refusal_rate": rng.binomial(int(v["n"]), v["refusal_rate"]) / v["n"]}
                         if g in ("toxic", "seemingly_toxic") else v) for g, v in groups.items()}
    return out


def matched_interval(seeds_a: list[figures.Curve], seeds_b: list[figures.Curve], n_boot: int = 1000,
                     seed: int = 0) -> tuple[float, float] | None:
    """95 % parametric bootstrap interval of compliance(b) - compliance(a) at matched defense success; None when
    a tracked rate has no n (older tracking.csv files) or too few replicates define a matched level."""
    if any("n" not in v for c in seeds_a + seeds_b for groups in c.values() for v in groups.values()):
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        m = matched(figures.mean_curve([_redraw(c, rng) for c in seeds_a]),
                    figures.mean_curve([_redraw(c, rng) for c in seeds_b]))
        if m is not None:
            diffs.append(m[2] - m[1])
    if len(diffs) < 0.9 * n_boot:
        return None
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def _per_seed(seeds_a: list[figures.Curve], seeds_b: list[figures.Curve]) -> str:
    vals = [matched(ca, cb) for ca, cb in zip(seeds_a, seeds_b)] if len(seeds_a) == len(seeds_b) else []
    return ", ".join("—" if m is None else f"{m[2] - m[1]:+.3f} at {m[0]:.2f}" for m in vals) or "—"


def matched_table(run_dir: Path, plan: dict[str, Any], a: str = "stl", b: str = "dcr+stl") -> list[Any]:
    rows = []
    per_seed = figures.collect_seeds(run_dir, plan)
    for model in sorted({m for m, _ in per_seed}):
        seeds_a, seeds_b = per_seed.get((model, a), []), per_seed.get((model, b), [])
        if not seeds_a or not seeds_b:
            continue
        mean_a, mean_b = figures.mean_curve(seeds_a), figures.mean_curve(seeds_b)
        m = matched(mean_a, mean_b)
        if m is None:
            continue
        level, ca, cb = m
        ci = matched_interval(seeds_a, seeds_b)
        rows.append([model, f"{level:.3f}", f"{ca:.3f}", f"{cb:.3f}", f"{cb - ca:+.3f}" + (
            f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else " (no interval)"), _per_seed(seeds_a, seeds_b),
            _reached(mean_a, mean_b, level), f"{len(trajectory(mean_a))} / {len(trajectory(mean_b))}"])
    if not rows:
        return [Para(f"No matched-safety comparison: {a} and {b} need tracked toxic and seemingly toxic probes.")]
    return [Table("Compliance at matched defense success (tracked checkpoints, mean over seeds)",
                  ["model", "defense success level both reach", f"{a} compliance", f"{b} compliance",
                   f"{b} - {a} [95% parametric bootstrap]", "per seed (difference at that seed's level)",
                   f"first step at the level ({a} / {b})", "checkpoints"], rows,
                  ["Read from the align stages' tracking.csv (Fig. 4): toxic and seemingly toxic probe groups, "
                   "never trained on (keyword judge); linear interpolation between checkpoints. The interval "
                   "redraws every tracked rate as Binomial(n, rate) / n: it covers the probes' sampling noise, "
                   "treats checkpoints as independent, and is approximate; the paired table above carries the "
                   "statistics of the end points. Step 0 is the model STL starts from (for DCR + STL, the refined "
                   "model): where a method is already at the level there, the row compares that start model, not "
                   "a point of STL's trade-off; when both methods end at the same level (e.g. 1.00), read the "
                   "curves (Fig. 4) instead."])]
