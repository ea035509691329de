"""DCR + STL minus STL, paired over prompts: the same prompts judged for both methods, pooled over seeds.

For every evaluated prompt the refusal judge's verdict is read back from each evaluate stage
(``judgements/<bench>__<judge>.jsonl``). A prompt contributes, per seed, the difference of the two methods'
outcomes (compliance on safe prompts: neither a refusal nor degenerate text; defense success = refusal on unsafe
ones). The table gives the mean difference over all (prompt, seed) pairs, a 95 % bootstrap interval that
resamples prompts (all seeds of a resampled prompt move together), the per-seed means, and each method's rate
with its Wilson interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dcr.errors import DcrError
from dcr.io import read_json, read_jsonl
from dcr.report.render import Para, Table

NEVER_TRAINED = ("oktest", "coconot", "or-bench", "phtest")  # over-refusal sets no stage trains on
SAFETY = ("malicious-instructions", "cona", "controversial", "harmfulq", "advbench")

EVALUATED = ("done", "skipped", "incomplete")  # plan statuses of a finished evaluation (skipped: finished before)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def is_never_trained(group: str, trained: frozenset[str] = frozenset()) -> bool:
    """A group of safe prompts from an over-refusal set no stage trains on (``trained``: benchmarks a refine
    source made in-distribution style, ``dcr.report.trained``)."""
    bench = group.split()[0]
    return bench in NEVER_TRAINED and bench not in trained and " safe" in group


def is_safety(group: str) -> bool:
    return group.split()[0] in SAFETY


def differences(merged: dict[str, dict[int, tuple[bool, bool]]]) -> dict[str, dict[int, float]]:
    """{prompt: {seed: outcome_b - outcome_a}} from :func:`collect`'s (outcome_a, outcome_b) pairs."""
    return {p: {s: float(y) - float(x) for s, (x, y) in d.items()} for p, d in merged.items()}


def _matrix(diffs: dict[str, dict[int, float]]) -> np.ndarray:
    """``[prompts, seeds]`` differences, NaN where a prompt lacks a seed."""
    seeds = sorted({s for d in diffs.values() for s in d})
    return np.array([[d.get(s, np.nan) for s in seeds] for d in diffs.values()], dtype=float)


def paired_bootstrap(diffs: dict[str, dict[int, float]], n_boot: int = 2000, seed: int = 0) -> tuple[float, float,
                                                                                                         float]:
    """Mean of all (prompt, seed) differences and its 95 % percentile interval, resampling prompts."""
    mat = _matrix(diffs)
    sums, counts = np.nansum(mat, axis=1), np.sum(~np.isnan(mat), axis=1)
    mean = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(mat), size=(n_boot, len(mat)))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return mean, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def seed_prompt_bootstrap(diffs: dict[str, dict[int, float]], n_boot: int = 2000,
                          seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean difference resampling seeds, then prompts (a two-level bootstrap): unlike
    :func:`paired_bootstrap` it counts the training run's randomness, not only the choice of prompts. With two or
    three seeds the seed level is drawn from very few values, so the interval is itself rough."""
    mat = _matrix(diffs)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        sub = mat[rng.integers(0, len(mat), size=len(mat))][:, rng.integers(0, mat.shape[1], size=mat.shape[1])]
        if not np.isnan(sub).all():
            means.append(float(np.nanmean(sub)))
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@dataclass(frozen=True)
class PairedSummary:
    """A paired difference pooled over its (prompt, seed) pairs: the mean, its 95 % interval resampling prompts
    (:func:`paired_bootstrap`), the interval resampling seeds then prompts (:func:`seed_prompt_bootstrap`; None
    with one seed) and each seed's own mean."""

    prompts: int
    mean: float
    low: float
    high: float
    seeds_low: float | None
    seeds_high: float | None
    per_seed: dict[int, float]

    def interval(self, min_seeds: int = 2) -> tuple[float, float]:
        """The interval a reading rule uses: seeds then prompts once there are ``min_seeds`` seeds or more, else
        prompts only (say which: :attr:`seeds_counted`)."""
        if self.seeds_counted(min_seeds):
            return self.seeds_low, self.seeds_high  # type: ignore[return-value]
        return self.low, self.high

    def seeds_counted(self, min_seeds: int = 2) -> bool:
        return self.seeds_low is not None and self.seeds_high is not None and len(self.per_seed) >= min_seeds

    def per_seed_text(self, fmt: str = "s{seed} {value:+.3f}") -> str:
        return ", ".join(fmt.format(seed=s, value=v) for s, v in sorted(self.per_seed.items()))


def summarise_pairs(diffs: dict[str, dict[int, float]], n_boot: int = 2000, seed: int = 0) -> PairedSummary:
    """:class:`PairedSummary` of ``{prompt: {seed: b - a}}`` (needs at least one pair)."""
    diffs = {p: d for p, d in diffs.items() if d}  # a prompt without a pair would be resampled as NaN
    if not diffs:
        raise ValueError("no (prompt, seed) pair to summarise")
    mean, low, high = paired_bootstrap(diffs, n_boot, seed)
    per_seed: dict[int, list[float]] = defaultdict(list)
    for d in diffs.values():
        for s, v in d.items():
            per_seed[s].append(v)
    slow, shigh = seed_prompt_bootstrap(diffs, n_boot, seed) if len(per_seed) > 1 else (None, None)
    return PairedSummary(len(diffs), mean, low, high, slow, shigh,
                         {s: sum(v) / len(v) for s, v in per_seed.items()})


def _verdicts(stage: Path, bench: str, judge: str) -> dict[str, tuple[bool, bool]]:
    """{prompt id: (refused, answered nothing)} from a stage's cached judgements; answered nothing = degenerate
    text or a missing verdict (:func:`dcr.judges.base.outcome`), neither a compliance nor a refusal."""
    from dcr.evaluate.judged import slug
    from dcr.judges.base import outcome
    from dcr.judges.record import judge_identity

    path = stage / "judgements" / f"{bench}__{slug(judge_identity(judge) or judge)}.jsonl"
    if not path.exists():
        return {}
    return {str(r["id"]): (bool(r["value"]), outcome(str(r.get("label", "")), bool(r["value"])) not in
                           ("refusal", "compliance")) for r in read_jsonl(path)}


def outcome(verdict: tuple[bool, bool], safe: bool) -> bool:
    """Compliance on a safe prompt (neither refused nor answered nothing), defense success (a refusal) on an unsafe
    one."""
    refused, nothing = verdict
    return not refused and not nothing if safe else refused


def _groups(bench: str, cfg: dict[str, Any]) -> dict[str, str]:
    """prompt id -> group name (benchmark, label, and the XSTest split) for one benchmark of one evaluate config."""
    from dcr.data import load_benchmark, xstest_split

    records = load_benchmark(bench, cfg.get("data_dir"), cfg.get("limit"), cfg.get("seed", 0))
    held = {r.id for r in xstest_split(cfg.get("xstest_heldout_frac", 0.2), cfg.get("split_seed", 0),
                                       cfg.get("data_dir"))[1]} if bench.startswith("xstest") else set()
    out = {}
    for r in records:
        split = (" held-out" if r.id in held else " in-distribution") if bench.startswith("xstest") and \
            r.label == "safe" else ""
        out[r.id] = f"{bench} {r.label}{split}"
    return out


def finished_files(run_dir: Path, plan: dict[str, Any], name: str,
                   stage: str | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(plan node, parsed ``name``) of every finished stage (of kind ``stage`` when given) whose directory holds the
    JSON file ``name``: refine's metrics.json and split.json, any stage's manifest.json."""
    for node in plan.get("nodes", []):
        path = run_dir / str(node.get("dir", "")) / name
        if (stage is None or node.get("stage") == stage) and node.get("status", "done") in EVALUATED \
                and path.is_file():
            yield node, read_json(path)


def _finished_evaluations(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in plan.get("nodes", [])
            if node.get("stage") == "evaluate" and node.get("status", "done") in EVALUATED]


def models(plan: dict[str, Any]) -> list[str]:
    """The models of the plan's finished evaluations, sorted (a use without one counts as ``""``)."""
    return sorted({use.get("model", "") for node in _finished_evaluations(plan) for use in node.get("uses", [])})


def evaluations(plan: dict[str, Any], model: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """{(method, seed): the plan node of its finished evaluate stage} of ``model``; None: the plan's one model
    (a plan of several models must name one, or one model's evaluations would stand in for another's)."""
    names = models(plan)
    if model is None and len(names) > 1:
        raise ValueError(f"the plan evaluates several models ({', '.join(names)}); pass model=")
    stages: dict[tuple[str, int], dict[str, Any]] = {}
    for node in _finished_evaluations(plan):
        for use in node.get("uses", []):
            if model is None or use.get("model", "") == model:
                stages[(use["method"], use["seed"])] = node
    return stages


def prompt_benchmarks(cfg: dict[str, Any]) -> list[str]:
    """The prompt benchmarks (groups expanded, file-name slugs) an evaluate config judged."""
    from dcr.evaluate.judged import slug
    from dcr.evaluate.suite import EXTRA, GENERAL, expand_benchmarks

    return [slug(b) for b in expand_benchmarks(list(cfg.get("benchmarks", []))) if b not in GENERAL + EXTRA]


def node_outcomes(run_dir: Path, node: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """{group: {prompt: outcome}} of one evaluate stage (benchmarks without verdicts left out: :func:`unjudged`).
    Safe prompts are read by the config's ``judge``; unsafe ones by its ``safety_judge`` when set (a guard's "safe
    response" is the defense success Table 1 counts), else by ``judge``."""
    cfg, out = node["config"], defaultdict(dict)
    judge = cfg.get("judge", "keyword")
    for bench in prompt_benchmarks(cfg):
        verdicts = _verdicts(run_dir / node["dir"], bench, judge)
        unsafe = _verdicts(run_dir / node["dir"], bench, cfg["safety_judge"]) if cfg.get("safety_judge") \
            else verdicts
        if verdicts or unsafe:
            for pid, group in _groups(bench, cfg).items():
                chosen = verdicts if " safe" in group else unsafe
                if pid in chosen:
                    out[group][pid] = outcome(chosen[pid], " safe" in group)
    return dict(out)


def unjudged(run_dir: Path, node: dict[str, Any]) -> list[str]:
    """The prompt benchmarks of an evaluate stage with no verdicts under today's rules of its judge(s): judged
    under older rules (re-run the stage to judge them again), or not evaluated."""
    cfg = node["config"]
    judges = [cfg.get("judge", "keyword"), *([cfg["safety_judge"]] if cfg.get("safety_judge") else [])]
    return [b for b in prompt_benchmarks(cfg) if not any(_verdicts(run_dir / node["dir"], b, j) for j in judges)]


# What decides which prompts an evaluation asks, how it asks them and how it judges the answers: two evaluations
# paired across runs must agree on all of it (dtype, batch sizes and the model under test may differ).
PAIRING_FIELDS = ("benchmarks", "limit", "seed", "judge", "safety_judge", "max_new_tokens", "stop_at_judge_window",
                  "template", "xstest_heldout_frac", "split_seed")


def check_pairable(mine: dict[str, Any], theirs: dict[str, Any], where: str = "") -> None:
    """Raise a DcrError naming the first field (of :data:`PAIRING_FIELDS`) where two evaluate configs differ, with
    ``mine``'s value first; ``where`` (e.g. "MY_RUN against THEIR_RUN") leads the message."""
    for field in PAIRING_FIELDS:
        if mine.get(field) != theirs.get(field):
            raise DcrError(f"{where + ': ' if where else ''}evaluations differ in {field} ({mine.get(field)!r} vs "
                           f"{theirs.get(field)!r}). Fix: pair only runs evaluated alike (same benchmarks, limit, "
                           "judge and decoding)")


def collect(run_dir: Path, plan: dict[str, Any], a: str = "stl", b: str = "dcr+stl",
            model: str | None = None, b_from: tuple[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """{group: {prompt: {seed: (outcome_a, outcome_b)}}} over every seed where both methods were evaluated
    (``model``: as :func:`evaluations`). ``b_from``: the (run directory, plan) holding method ``b``'s evaluations
    when another run made them, e.g. an arm run on its own and paired with an archived STL of the same seeds; each
    pair's two evaluate configs must agree on :data:`PAIRING_FIELDS` (:func:`check_pairable`)."""
    stages = evaluations(plan, model)
    b_run, b_stages = (run_dir, stages) if b_from is None else (b_from[0], evaluations(b_from[1], model))
    out: dict[str, Any] = defaultdict(lambda: defaultdict(dict))
    for (method, seed), node in sorted(stages.items()):
        other = b_stages.get((b, seed))
        if method != a or other is None:
            continue
        if b_from is not None:
            check_pairable(other["config"], node["config"], f"{b_run} against {run_dir}, seed {seed}")
        theirs = node_outcomes(b_run, other)
        for group, prompts in node_outcomes(run_dir, node).items():
            for pid, mine in prompts.items():
                if pid in theirs.get(group, {}):
                    out[group][pid][seed] = (mine, theirs[group][pid])
    return out


def _sets(groups: list[str]) -> str:
    names = sorted({g.split()[0] for g in groups})
    return f"{len(names)} set{'s' * (len(names) != 1)}: {', '.join(names)}"


def _pools(data: dict[str, Any], styled: frozenset[str]) -> dict[str, list[str]]:
    """The pooled rows, each named by the sets that are really in it."""
    never = [g for g in data if is_never_trained(g, styled)]
    safety = [g for g in data if is_safety(g)]
    pools = {f"over-refusal, never trained ({_sets(never)})": never,
             f"safety, defense success ({_sets(safety)})": safety}
    styled_groups = [g for g in data if g.split()[0] in styled & set(NEVER_TRAINED) and " safe" in g]
    if styled_groups:
        pools[f"over-refusal, in-distribution style ({_sets(styled_groups)})"] = styled_groups
    return {name: groups for name, groups in pools.items() if groups}


def _unjudged_note(run_dir: Path, plan: dict[str, Any], model: str | None, a: str, b: str) -> list[str]:
    gaps = [f"{method} seed {seed}: {', '.join(missing)}" for (method, seed), node in
            sorted(evaluations(plan, model).items()) if method in (a, b) and (missing := unjudged(run_dir, node))]
    return [f"Left out, no verdicts under today's judge rules (judged by older rules, or not evaluated; re-run the "
            f"stage to judge them again): {'; '.join(gaps)}."] if gaps else []


def paired_table(run_dir: Path, plan: dict[str, Any], a: str = "stl", b: str = "dcr+stl") -> list[Any]:
    """The report block, per model: one row per group plus the never-trained over-refusal and the safety pools."""
    names = models(plan)
    blocks: list[Any] = []
    for model in names or [None]:
        blocks += _paired_model(run_dir, plan, a, b, model if len(names) > 1 else None)
    return blocks


def _paired_model(run_dir: Path, plan: dict[str, Any], a: str, b: str, model: str | None) -> list[Any]:
    from dcr.report.trained import trained

    data = collect(run_dir, plan, a, b, model)
    of = f" ({model})" if model else ""
    if not data:
        return [Para(f"No paired comparison{of}: no seed with both {a} and {b} evaluated (with per-prompt "
                     f"verdicts).")]
    judge_note = _judge_note(plan)
    pools = _pools(data, trained(run_dir, plan).benchmarks)
    rows = []
    for name, groups in [(g, [g]) for g in sorted(data)] + list(pools.items()):
        merged = {f"{g}/{p}": v for g in groups for p, v in data[g].items()}
        if merged:
            rows.append(_row(name, merged))
    header = ["group (outcome: compliance on safe, defense success on unsafe)", "n prompts", "seeds",
              f"{a} rate [95% Wilson]", f"{b} rate [95% Wilson]", f"{b} - {a} [95% paired bootstrap]",
              "95% with seeds resampled too", "per seed"]
    return [Table(f"{b} minus {a}, paired over prompts{of}", header, rows,
                  ["The same prompts for both methods; rates and differences pooled over seeds (n = prompt x seed "
                   "pairs); the paired bootstrap resamples prompts with all their seeds, so it measures the choice "
                   "of prompts only. The next column resamples seeds, then prompts: it also counts how much the "
                   "difference moves from one training seed to another (rough with two or three seeds). Where "
                   "the per-seed values differ in sign, read that column.", *judge_note,
                   *_unjudged_note(run_dir, plan, model, a, b)])]


def _judge_note(plan: dict[str, Any]) -> list[str]:
    """Which judge read the safe and the unsafe prompts, when they differ."""
    cfgs = [n["config"] for n in plan.get("nodes", []) if n.get("stage") == "evaluate" and n.get("config")]
    pairs = sorted({(c.get("judge", "keyword"), c.get("safety_judge") or c.get("judge", "keyword")) for c in cfgs})
    return [f"Safe prompts read by {j}, unsafe prompts (defense success) by {s}, as in Table 1." for j, s in pairs
            if j != s]


def _row(name: str, merged: dict[str, dict[int, tuple[bool, bool]]]) -> list[str]:
    pairs = [v for d in merged.values() for v in d.values()]
    n = len(pairs)
    ka, kb = sum(x for x, _ in pairs), sum(y for _, y in pairs)
    p = summarise_pairs(differences(merged))
    la, ha = wilson(ka, n)
    lb, hb = wilson(kb, n)
    both = f"[{p.seeds_low:+.3f}, {p.seeds_high:+.3f}]" if p.seeds_low is not None else "— (1 seed)"
    return [name, str(len(merged)), str(len(p.per_seed)), f"{ka / n:.3f} [{la:.3f}, {ha:.3f}]",
            f"{kb / n:.3f} [{lb:.3f}, {hb:.3f}]", f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}]", both,
            p.per_seed_text("{seed}: {value:+.3f}")]
