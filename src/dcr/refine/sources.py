"""Contrastive data as configuration (issue 29): named prompt sources for each refine class, their overlap with
evaluation prompts removed, and batch quotas per source.

The paper pairs XSTest safe prompts against HH-RLHF toxic ones: the two classes differ in source, style and
length as much as in harm, so Circle Loss can be met by learning which dataset a prompt comes from. Sources whose
pairs match in style (XSTest safe / unsafe, CoCoNot contrast-preference / original safety-concern requests,
Safety-Tuned LLaMAs physical safety safe / unsafe) let the harm be the only difference; with
``balance: class-and-source`` every batch also holds each source of each class in fixed shares, so within a batch
the source cannot predict the class.

A source spec is ``NAME`` (every prompt the source has) or ``NAME:COUNT`` (a seeded sample of COUNT).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from dcr.data import BENCHMARKS, PromptRecord, load_benchmark, load_hh_harmful, readers, xstest_split
from dcr.data.registry import data_dir as resolve_data_dir
from dcr.errors import ConfigError, DataError

log = logging.getLogger("dcr.refine")
SEEMINGLY, TOXIC = 0, 1
CLASS_NAMES = {SEEMINGLY: "seemingly toxic", TOXIC: "toxic"}
SAFETY_CONCERNS = "Requests with safety concerns"
Loader = Callable[[str | None, float, int], list[PromptRecord]]


def _xstest(label: str) -> Loader:
    def load(root: str | None, frac: float, split_seed: int) -> list[PromptRecord]:
        return xstest_split(frac, split_seed, root, label=label)[0]  # the in-distribution part only

    return load


def _coconot(file: str, category: str | None, prefix: str, label: str) -> Loader:
    def load(root: str | None, frac: float, split_seed: int) -> list[PromptRecord]:
        path = resolve_data_dir(root) / "coconot" / file
        out, seen = [], set()
        for i, row in enumerate(readers.read_jsonl(path), start=1):
            prompt = readers.require_str(path, row, "prompt", i).strip()
            ident, sub = readers.require_str(path, row, "id", i), readers.require_str(path, row, "subcategory", i)
            if category is not None and readers.require_str(path, row, "category", i) != category or prompt in seen:
                continue
            seen.add(prompt)
            out.append(PromptRecord(f"{prefix}-{ident}", prompt, label, sub, prefix))
        return out

    return load


def _benchmark(name: str) -> Loader:
    return lambda root, frac, split_seed: load_benchmark(name, root)


@dataclass(frozen=True)
class Source:
    """A named prompt source: its class, the benchmark family its prompts belong to (whose evaluation columns
    become in-distribution style when it trains refine), and the benchmarks that hold its own prompts (not
    counted as overlap)."""

    name: str
    label: int
    family: str
    own: tuple[str, ...]
    description: str
    load: Loader


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("xstest-safe", SEEMINGLY, "xstest", ("xstest", "xstest-safe", "xstest-safe-indist", "xstest-safe-heldout"),
           "XSTest safe prompts, in-distribution split (200 at xstest_heldout_frac 0.2)", _xstest("safe")),
    Source("coconot-pref", SEEMINGLY, "coconot", (),
           "CoCoNot contrast-preference prompts (coconot_pref.jsonl, 919 unique, benign)",
           _coconot("coconot_pref.jsonl", None, "coconot-pref", "safe")),
    Source("physical-safe", SEEMINGLY, "physical-safety", ("physical-safety-safe",),
           "Safety-Tuned LLaMAs I-PhysicalSafetySafe (100)", _benchmark("physical-safety-safe")),
    Source("hh-rlhf", TOXIC, "hh-rlhf", ("hh-rlhf",), "HH-RLHF harmless-base test first turns (the paper's)",
           lambda root, frac, split_seed: load_hh_harmful(root)),
    Source("xstest-unsafe", TOXIC, "xstest", ("xstest", "xstest-unsafe"),
           "XSTest unsafe contrast prompts, in-distribution split (160 at xstest_heldout_frac 0.2)",
           _xstest("unsafe")),
    Source("coconot-original", TOXIC, "coconot", (),
           f"CoCoNot original set, category '{SAFETY_CONCERNS}' (coconot_eval.jsonl, 395 of 1,001)",
           _coconot("coconot_eval.jsonl", SAFETY_CONCERNS, "coconot-original", "unsafe")),
    Source("physical-unsafe", TOXIC, "physical-safety", ("physical-safety-unsafe",),
           "Safety-Tuned LLaMAs I-PhysicalSafetyUnsafe (100)", _benchmark("physical-safety-unsafe")),
)}
PAPER_SOURCES = {SEEMINGLY: "xstest-safe", TOXIC: "hh-rlhf"}
NOT_EVALUATION = ("hh-rlhf", "safety")  # refine's toxic pool (training-side), and the five safety sets pooled


@dataclass(frozen=True)
class SourceSpec:
    name: str
    count: int | None  # None: every prompt the source has


def parse_source(text: str, label: int, field: str) -> SourceSpec:
    """``NAME`` or ``NAME:COUNT`` of a source of class ``label``; ConfigError naming ``field`` and the fix."""
    name, sep, count = (part.strip() for part in str(text).partition(":"))
    known = ", ".join(n for n, s in SOURCES.items() if s.label == label)
    if not name:
        raise ConfigError(f"{field}: {text!r} has an empty name. Fix: NAME or NAME:COUNT, NAME one of {known}")
    if name not in SOURCES or SOURCES[name].label != label:
        other = name in SOURCES and f" (a {CLASS_NAMES[SOURCES[name].label]} source)" or ""
        raise ConfigError(f"{field}: {name!r} is not a {CLASS_NAMES[label]} source{other}. Fix: use one of {known}")
    if sep and not (count.isdigit() and int(count) >= 2):
        raise ConfigError(f"{field}: {text!r} has count {count!r}. Fix: NAME:COUNT with COUNT an integer >= 2, or "
                          "NAME alone for every prompt of the source")
    return SourceSpec(name, int(count) if sep else None)


def parse_sources(items: list[str], label: int, field: str) -> list[SourceSpec]:
    """Every spec of one class; ConfigError on an empty list or a source named twice."""
    if not items:
        raise ConfigError(f"{field} is empty. Fix: name at least one source, or leave it unset for the paper's")
    specs = [parse_source(t, label, field) for t in items]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{field} names a source twice ({', '.join(names)}). Fix: name each source once")
    return specs


def _norm(text: str) -> str:
    from dcr.align.data import normalize_prompt

    return normalize_prompt(text)


def evaluation_prompts(root: str | None) -> dict[str, set[str]]:
    """Normalised prompts of every offline evaluation benchmark (the hub-only ones cannot be checked offline)."""
    return {name: {_norm(r.prompt) for r in spec.loader(resolve_data_dir(root))}
            for name, spec in BENCHMARKS.items() if not spec.hub_id and name not in NOT_EVALUATION}


def overlap(source: Source, records: list[PromptRecord], evals: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{record id: [evaluation benchmarks other than the source's own that hold its prompt]}``, for the
    records that have any (measurement only: the paper's data path keeps them and records this)."""
    out = {}
    for r in records:
        key = _norm(r.prompt)
        hits = [name for name, p in evals.items() if name not in source.own and key in p]
        if hits:
            out[r.id] = hits
    return out


def drop_overlap(source: Source, records: list[PromptRecord], evals: dict[str, set[str]],
                 seen: set[str]) -> tuple[list[PromptRecord], list[str]]:
    """``records`` without prompts that appear in an evaluation benchmark other than the source's own, or that
    an earlier source already gave (``seen`` is updated); returns (kept, dropped ids)."""
    shared = overlap(source, records, evals)
    kept, dropped = [], []
    for r in records:
        key = _norm(r.prompt)
        if r.id in shared or key in seen:
            dropped.append(r.id)
        else:
            seen.add(key)
            kept.append(r)
    if dropped:
        log.info("refine source %s: %d prompt(s) dropped (in an evaluation set, or given twice): %s", source.name,
                 len(dropped), ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""))
    return kept, dropped


def take(spec: SourceSpec, records: list[PromptRecord], seed: int, front: bool = False) -> list[PromptRecord]:
    """``spec.count`` records (a seeded sample, in source order; ``front``: the first ones) or all; DataError when
    the source has too few."""
    n = len(records) if spec.count is None else spec.count
    if n > len(records) or n < 2:
        raise DataError(spec.name, f"the source has {len(records)} usable prompts (after overlap removal), "
                        f"{n} were asked for", f"lower the count (NAME:COUNT) to at most {len(records)}")
    if n == len(records) or front:
        return list(records[:n])
    keep = set(random.Random(seed).sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in keep]


def quotas(k: int, sizes: dict[str, int], field: str) -> dict[str, int]:
    """Per-batch prompts of each source of one class, in proportion to the sources' sizes (largest remainder),
    at least one each; ConfigError when the class's share of a batch is smaller than its number of sources."""
    if k < len(sizes):
        raise ConfigError(f"{field}: {len(sizes)} sources but only {k} prompts of that class per batch. Fix: raise "
                          "batch_size (or seemingly_frac), or name fewer sources")
    total = sum(sizes.values())
    raw = {s: 1 + (k - len(sizes)) * n / total for s, n in sizes.items()}
    out = {s: int(v) for s, v in raw.items()}
    for s in sorted(raw, key=lambda s: (out[s] - raw[s], s))[:k - sum(out.values())]:
        out[s] += 1
    return out
