"""``dcr report RUN RUN ... --out DIR --ablation``: the paper's ablations, one refine setting varied per run.

Each run directory (live or archived) is one variant: the same experiment file with one refine field changed
(``dcr run ... --set refine.layer=8``), so STL and the evaluation are the same stages in every run. The first
directory is the reference. For every run the report gives

- the refine fields that differ between the runs (``seed`` and paths left out);
- held-out separability before and after refinement, from the refine stage's metrics.json (``eval.hh``: unused
  HH-RLHF toxic prompts against the held-out XSTest safe prompts; linear-probe accuracy, k-means accuracy and
  cross-class cosine), averaged over the run's refine stages;
- DCR + STL minus STL, paired over prompts with a 95 % bootstrap interval (:mod:`dcr.report.paired`), for XSTest
  held-out and in-distribution compliance, compliance on the never-trained over-refusal sets and defense
  success on the five safety sets.

One figure per varied field draws the reference and the runs that differ from it in that field only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import atomic_open, read_json, write_json
from dcr.report import paired
from dcr.report.figures import save_figure, slug
from dcr.report.render import Block, Heading, Image, Para, Table, to_html, to_markdown
from dcr.report.trained import trained

# pool -> member(group, styled): ``styled`` = benchmarks a refine source made in-distribution style (report.trained)
POOLS: dict[str, Any] = {
    "XSTest held-out compliance": lambda g, styled: g == "xstest safe held-out",
    "XSTest in-distribution compliance": lambda g, styled: g == "xstest safe in-distribution",
    "never-trained over-refusal compliance": paired.is_never_trained,
    "safety defense success": lambda g, styled: paired.is_safety(g),
}
DECISION = "XSTest in-distribution compliance"  # the trained-on column a setting may be chosen on (issue 17)
IGNORED = {"seed", "data_dir", "device", "model"}  # never an ablation axis
SEPARABILITY = ("probe_accuracy", "kmeans_accuracy", "cross_class_cosine")


def _refine_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in plan.get("nodes", []) if n.get("stage") == "refine"]


def _metrics(run: Path, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each refine stage's metrics.json ({} where the stage has none)."""
    paths = [run / node["dir"] / "metrics.json" for node in nodes]
    return [read_json(path) if path.is_file() else {} for path in paths]


def _separability(metrics: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{"before"|"after": {metric: mean over the run's refine stages}} from eval.hh of each metrics.json."""
    vals: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for m in metrics:
        hh = m.get("eval", {}).get("hh", {})
        for when in vals:
            for key in SEPARABILITY:
                if key in hh.get(when, {}):
                    vals[when].setdefault(key, []).append(float(hh[when][key]))
    return {w: {k: sum(v) / len(v) for k, v in d.items()} for w, d in vals.items()}


def _differences(run: Path, plan: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{pool: {mean, lo, hi, n}} of DCR + STL minus STL over the run's paired prompts (all its seeds)."""
    return _pools(paired.collect(run, plan), trained(run, plan).benchmarks)


def _versus_reference(ref: tuple[Path, dict[str, Any]], run: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    """{pool: {mean, lo, hi, n}} of the run's DCR + STL minus the reference's, paired over prompts of each seed
    both evaluated (the variant's own effect, without STL's noise in between). The two evaluations of a pair must
    agree in prompts, decoding and judge (:func:`dcr.report.paired.check_pairable`)."""
    data = paired.collect(*ref, a="dcr+stl", b="dcr+stl", b_from=run)  # DcrError when evaluated otherwise
    return _pools(data, trained(*ref).benchmarks | trained(*run).benchmarks)


def _pools(data: dict[str, Any], styled: frozenset[str] = frozenset()) -> dict[str, dict[str, float]]:
    out = {}
    for pool, member in POOLS.items():
        merged = {f"{g}/{p}": v for g in data if member(g, styled) for p, v in data[g].items()}
        if merged:
            mean, lo, hi = paired.paired_bootstrap(paired.differences(merged))
            out[pool] = {"mean": mean, "lo": lo, "hi": hi, "n": len(merged)}
    return out


def variants(runs: list[Path]) -> list[dict[str, Any]]:
    """One entry per run: name, refine config, separability, paired differences."""
    out, plans = [], []
    for run in runs:
        if not (run / "plan.json").is_file():
            raise DcrError(f"{run}: no plan.json. Fix: pass run directories written by `dcr run` (or archives)")
        plan = read_json(run / "plan.json")
        nodes = _refine_nodes(plan)
        if not nodes:
            raise DcrError(f"{run}: its plan has no refine stage. Fix: pass runs of a method with DCR (dcr+stl)")
        config = dict(nodes[0].get("config", {}))
        metrics = _metrics(run, nodes)
        if config.get("layer") is None and metrics[0]:  # None = the model's middle block, resolved there
            config["layer"] = metrics[0].get("layer")
        out.append({"run": run.name, "config": config, "seeds": sorted(
            {u["seed"] for n in nodes for u in n.get("uses", [])}), "separability": _separability(metrics),
            "differences": _differences(run, plan)})
        plans.append((run, plan))
    for entry, run_plan in zip(out[1:], plans[1:]):
        entry["versus_reference"] = _versus_reference(plans[0], run_plan)
    return out


def varied_fields(entries: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for e in entries for k in e["config"]} - IGNORED)
    return [k for k in keys if len({repr(e["config"].get(k)) for e in entries}) > 1]


def axis(entries: list[dict[str, Any]], fields: list[str], field: str) -> list[dict[str, Any]]:
    """The reference (first entry) and the entries that differ from it in ``field`` only, sorted by value."""
    ref = entries[0]["config"]
    same = [e for e in entries if all(e["config"].get(f) == ref.get(f) for f in fields if f != field)]
    return sorted(same, key=lambda e: (str(type(e["config"].get(field))), e["config"].get(field)))


def _fmt_diff(d: dict[str, float] | None) -> str:
    return "—" if not d else f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] (n {d['n']})"


def _fmt_sep(sep: dict[str, dict[str, float]]) -> str:
    b, a = sep.get("before", {}), sep.get("after", {})
    parts = [f"{k.split('_')[0]} {b[k]:.2f}→{a[k]:.2f}" for k in SEPARABILITY if k in a and k in b]
    return "; ".join(parts) or "—"


def table(entries: list[dict[str, Any]], fields: list[str]) -> Table:
    rows = [[e["run"] + (" (reference)" if i == 0 else ""), *[str(e["config"].get(f)) for f in fields],
             ", ".join(map(str, e["seeds"])), _fmt_sep(e["separability"]),
             *[_fmt_diff(e["differences"].get(p)) for p in POOLS],
             _fmt_diff(e.get("versus_reference", {}).get(DECISION))] for i, e in enumerate(entries)]
    return Table("Refine ablations: held-out separability after refine, and DCR + STL minus STL",
                 ["run", *fields, "seeds", "held-out separability before→after (probe; kmeans; cross-class "
                  "cosine)", *POOLS, f"{DECISION}: DCR + STL minus the reference's"], rows,
                 ["Differences are paired over the same prompts (95 % bootstrap over prompts); n counts prompts. "
                  "Each run has its own STL and DCR + STL stages only where its settings differ; STL and the "
                  "evaluation prompts are shared.", "XSTest in-distribution prompts are trained on by refine.",
                  "The last column pairs each run's DCR + STL with the reference's over the same prompts and seeds "
                  "(ablation.json has every pool): the column a refine setting may be chosen on."])


def figure(entries: list[dict[str, Any]], field: str, path: Path) -> Path:
    """Two panels against the field's value: paired differences with CIs, and separability after refine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(e["config"].get(field)) for e in entries]
    xs = list(range(len(entries)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, pool in enumerate(POOLS):  # in-distribution too: the column a setting may be chosen on
        ds = [e["differences"].get(pool) for e in entries]
        pts = [(x + 0.08 * (k - 1.5), d) for x, d in zip(xs, ds) if d]
        label = pool + (" (trained on)" if "in-distribution" in pool else "")
        if pts:
            ax1.errorbar([x for x, _ in pts], [d["mean"] for _, d in pts], capsize=3, marker="o", label=label,
                         yerr=[[d["mean"] - d["lo"] for _, d in pts], [d["hi"] - d["mean"] for _, d in pts]])
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set(xticks=xs, xticklabels=labels, xlabel=field, ylabel="DCR + STL minus STL [95% CI]",
            title="Downstream effect")
    ax1.legend(fontsize=7)
    for key, style in (("probe_accuracy", "o-"), ("kmeans_accuracy", "s-"), ("cross_class_cosine", "^-")):
        ys = [e["separability"].get("after", {}).get(key, math.nan) for e in entries]
        before = [e["separability"].get("before", {}).get(key, math.nan) for e in entries]
        line = ax2.plot(xs, ys, style, label=f"{key.replace('_', ' ')} after")[0]
        ax2.plot(xs, before, ":", color=line.get_color(), alpha=0.6)
    ax2.set(xticks=xs, xticklabels=labels, xlabel=field, ylim=(-0.05, 1.05),
            title="Held-out separability after refine (dotted: before)")
    ax2.legend(fontsize=7)
    return save_figure(fig, path)


def ablation_report(runs: list[Path], out: Path) -> list[Path]:
    """Write OUT/report.md, OUT/report.html, OUT/ablation.json and OUT/figures/ablation-<field>.png."""
    if len(runs) < 2:
        raise DcrError("an ablation needs at least two run directories. Fix: pass the reference run and variants")
    entries = variants([r.resolve() for r in runs])
    fields = varied_fields(entries)
    blocks: list[Block] = [Heading("DCR ablations", 1), Para(
        f"Runs: {', '.join(e['run'] for e in entries)}; reference: {entries[0]['run']}. Refine fields that "
        f"differ: {', '.join(fields) or 'none'}."), table(entries, fields)]
    for field in fields:
        line = axis(entries, fields, field)
        if len(line) > 1:
            path = figure(line, field, out / "figures" / f"ablation-{slug(field)}.png")
            blocks.append(Image(path, f"{field}: the reference and the runs that differ from it in {field} only"))
    write_json(out / "ablation.json", {"reference": entries[0]["run"], "fields": fields, "runs": entries})
    md, page = out / "report.md", out / "report.html"
    with atomic_open(md) as fh:
        fh.write(to_markdown(blocks, out))
    with atomic_open(page) as fh:
        fh.write(to_html(blocks, "DCR ablations"))
    return [md, page]
