"""PNG figures from the align stages' ``tracking.csv`` (columns ``step, group, refusal_prob, refusal_rate, n``).

- Fig. 4: compliance on seemingly toxic prompts (1 - refusal rate) against defense success on toxic prompts
  (refusal rate) at every tracked step, one line per method, darker points for later steps.
- Fig. 5: refusal probability (A.5) over training for toxic / seemingly toxic / normal prompts, one panel per
  method.
With several seeds, the curves are the mean over seeds at each tracked step.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from dcr.errors import DataError

GROUPS = ("toxic", "seemingly_toxic", "normal")
GROUP_COLORS = {"toxic": "tab:red", "seemingly_toxic": "tab:orange", "normal": "tab:blue"}
METHOD_COLORS = ("Blues", "Reds", "Greens", "Purples", "Oranges", "Greys")
OWNER_ORDER = ("dcr+stl", "dcr+stl-aug", "stl", "stl-aug", "surgical", "scans")

Curve = dict[int, dict[str, dict[str, float]]]  # step -> group -> {"refusal_prob", "refusal_rate"[, "n"]}


def read_tracking(path: Path) -> Curve:
    """Parse one tracking.csv; a malformed row raises a DataError naming the file and row."""
    curve: Curve = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"step", "group", "refusal_prob", "refusal_rate"}
        if not need <= set(reader.fieldnames or ()):
            raise DataError(path, f"columns {reader.fieldnames} lack {sorted(need)}", "re-run the align stage")
        for i, row in enumerate(reader, start=2):
            try:
                step = int(float(row["step"]))
                curve.setdefault(step, {})[row["group"]] = {
                    "refusal_prob": float(row["refusal_prob"]), "refusal_rate": float(row["refusal_rate"]),
                    **({"n": float(row["n"])} if row.get("n") else {})}
            except (TypeError, ValueError):
                raise DataError(path, f"non-numeric value in {row}", "re-run the align stage", row=i) from None
    return curve


def mean_curve(curves: list[Curve]) -> Curve:
    """Mean over seeds at the steps every seed tracked."""
    steps = set.intersection(*(set(c) for c in curves)) if curves else set()
    out: Curve = {}
    for step in sorted(steps):
        for group in set.intersection(*(set(c[step]) for c in curves)):
            vals = [c[step][group] for c in curves]
            keys = set.intersection(*(set(v) for v in vals))
            out.setdefault(step, {})[group] = {k: sum(v[k] for v in vals) / len(vals) for k in sorted(keys)}
    return out


def _owner(node: dict[str, Any]) -> str:
    methods = {u["method"] for u in node.get("uses", [])}
    for m in OWNER_ORDER:
        if m in methods:
            return m
    return str(node.get("config", {}).get("method", node["id"]))


def collect(run_dir: Path, plan: dict[str, Any]) -> dict[str, dict[str, Curve]]:
    """``{model: {method: mean curve}}`` over the align stages of plan.json that wrote a tracking.csv."""
    out: dict[str, dict[str, Curve]] = {}
    for (model, method), curves in collect_seeds(run_dir, plan).items():
        out.setdefault(model, {})[method] = mean_curve(curves)
    return out


def collect_seeds(run_dir: Path, plan: dict[str, Any]) -> dict[tuple[str, str], list[Curve]]:
    """``{(model, method): [one curve per align stage]}`` (one per seed), from each stage's tracking.csv."""
    per: dict[tuple[str, str], list[Curve]] = {}
    for node in plan.get("nodes", []):
        path = run_dir / node["dir"] / "tracking.csv"
        if node["stage"] != "align" or not path.exists():
            continue
        curve = read_tracking(path)
        if not curve:
            continue
        for model in sorted({u["model"] for u in node.get("uses", [])}):
            per.setdefault((model, _owner(node)), []).append(curve)
    return per


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write ``fig`` as a PNG at ``path`` (parents created) and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def fig4(model: str, curves: dict[str, Curve], path: Path) -> Path | None:
    """Compliance-vs-defense trajectory during alignment; None if no method tracked both groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    drawn = 0
    for i, (method, curve) in enumerate(sorted(curves.items())):
        steps = [s for s in sorted(curve) if {"toxic", "seemingly_toxic"} <= set(curve[s])]
        if not steps:
            continue
        xs = [1.0 - curve[s]["seemingly_toxic"]["refusal_rate"] for s in steps]
        ys = [curve[s]["toxic"]["refusal_rate"] for s in steps]
        cmap = plt.get_cmap(METHOD_COLORS[i % len(METHOD_COLORS)])
        shades = [cmap(0.35 + 0.6 * k / max(1, len(steps) - 1)) for k in range(len(steps))]
        ax.plot(xs, ys, color=shades[-1], alpha=0.6, label=method)
        ax.scatter(xs, ys, c=shades, s=28, zorder=3)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="compliance on seemingly toxic prompts (1 - refusal rate)",
           ylabel="defense success on toxic prompts (refusal rate)", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
           title=f"Refusal trajectory during alignment: {model}")
    ax.legend(title="method (darker = later step)", fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def fig5(model: str, curves: dict[str, Curve], path: Path) -> Path | None:
    """Refusal probability over training steps per prompt group, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted(m for m, c in curves.items() if c)
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.8), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        curve = curves[method]
        for group in GROUPS:
            steps = [s for s in sorted(curve) if group in curve[s]]
            ax.plot(steps, [curve[s][group]["refusal_prob"] for s in steps], marker="o", ms=3,
                    color=GROUP_COLORS[group], label=group.replace("_", " "))
        ax.set(title=method, xlabel="optimizer step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("refusal probability (A.5)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Refusal probability during alignment: {model}")
    return save_figure(fig, path)


def write_figures(run_dir: Path, plan: dict[str, Any]) -> list[tuple[Path, str]]:
    """Write Fig. 4 and Fig. 5 per model under RUN_DIR/figures/; return (path, caption) pairs."""
    out: list[tuple[Path, str]] = []
    for model, curves in sorted(collect(run_dir, plan).items()):
        p4 = fig4(model, curves, run_dir / "figures" / f"fig4-trajectory-{slug(model)}.png")
        if p4 is not None:
            out.append((p4, f"Fig. 4 layout ({model}): compliance on seemingly toxic prompts vs defense success "
                             "on toxic prompts at each tracked alignment step (keyword refusal judge)."))
        p5 = fig5(model, curves, run_dir / "figures" / f"fig5-refusal-prob-{slug(model)}.png")
        if p5 is not None:
            out.append((p5, f"Fig. 5 layout ({model}): refusal probability over alignment steps for toxic, "
                             "seemingly toxic and normal prompts, one panel per method."))
    return out
