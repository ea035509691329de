"""Compliance at matched safety: each method's compliance at the defense-success level both reach during STL.

DCR may shift the trade-off instead of improving it, so the end points of Table 1 alone cannot say which. The
tracked checkpoints of the align stages (Fig. 4) give, per method, defense success d (refusal rate on toxic probes)
and compliance c (1 - refusal rate on seemingly toxic probes) over training steps, averaged over seeds. At the
level L = the smaller of the two methods' highest d, each method's compliance is read at the first checkpoint
reaching L, linearly interpolated from the checkpoint before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcr.report import figures
from dcr.report.render import Para, Table


def trajectory(curve: figures.Curve) -> list[tuple[float, float]]:
    """(defense success, compliance) at every tracked step, in training order."""
    return [(curve[s]["toxic"]["refusal_rate"], 1.0 - curve[s]["seemingly_toxic"]["refusal_rate"])
            for s in sorted(curve) if {"toxic", "seemingly_toxic"} <= set(curve[s])]


def compliance_at(points: list[tuple[float, float]], level: float) -> float | None:
    """Compliance where defense success first reaches ``level`` (interpolated); None if it never does."""
    for k, (d, c) in enumerate(points):
        if d >= level:
            if k == 0:
                return c
            d0, c0 = points[k - 1]
            return c0 + (level - d0) / (d - d0) * (c - c0) if d > d0 else c
    return None


def matched_table(run_dir: Path, plan: dict[str, Any], a: str = "stl", b: str = "dcr+stl") -> list[Any]:
    rows = []
    for model, curves in sorted(figures.collect(run_dir, plan).items()):
        if a not in curves or b not in curves:
            continue
        pa, pb = trajectory(curves[a]), trajectory(curves[b])
        if not pa or not pb:
            continue
        level = min(max(d for d, _ in pa), max(d for d, _ in pb))
        ca, cb = compliance_at(pa, level), compliance_at(pb, level)
        if ca is None or cb is None:
            continue
        rows.append([model, f"{level:.3f}", f"{ca:.3f}", f"{cb:.3f}", f"{cb - ca:+.3f}",
                     f"{len(pa)} / {len(pb)}"])
    if not rows:
        return [Para(f"No matched-safety comparison: {a} and {b} need tracked toxic and seemingly toxic probes.")]
    return [Table("Compliance at matched defense success (tracked checkpoints, mean over seeds)",
                  ["model", "defense success level both reach", f"{a} compliance", f"{b} compliance",
                   f"{b} - {a}", "checkpoints"], rows,
                  ["Read from the align stages' tracking.csv (Fig. 4): toxic and seemingly toxic probe groups, "
                   "never trained on; linear interpolation between checkpoints. No interval: tracking stores "
                   "rates, not per-prompt verdicts, so this is descriptive; the paired table above carries the "
                   "statistics of the end points."])]
