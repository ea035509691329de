"""Benchmark registry over a local data directory (or the Hugging Face Hub when a hub id is named)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.data import readers
from dcr.data.records import PromptRecord
from dcr.datadir import data_dir_source
from dcr.errors import DataError, DcrError


class BenchmarkMissing(DcrError):
    """The benchmark's data is not available; ``reason`` says why and how to get it.

    ``transient`` marks a condition that may pass (the hub could not be reached): a stage that met it is not
    cached as done.
    """

    def __init__(self, name: str, reason: str, transient: bool = False) -> None:
        super().__init__(f"benchmark {name!r} is missing: {reason}")
        self.name = name
        self.reason = reason
        self.transient = transient


def data_dir(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$DCR_DATA_DIR``, else the vendored copy (``dcr.datadir``); an error if not a directory."""
    path, source = data_dir_source(explicit)
    if not path.is_dir():
        if source == "vendored":
            raise DcrError(f"the vendored data directory {path} is missing from this installation. Fix: reinstall "
                           "dcr (pip install -e . from a checkout), or pass --data-dir DIR / set DCR_DATA_DIR")
        raise DcrError(f"data directory {path} (from {source}) does not exist. Fix: point --data-dir / "
                       "DCR_DATA_DIR at it, or leave both unset to use the data vendored with dcr")
    return path


def _xstest(root: Path) -> list[PromptRecord]:
    path = root / "xstest" / "xstest_prompts.csv"
    rows = readers.read_csv(path, ("id", "prompt", "type", "label"))
    out = []
    for i, r in enumerate(rows, start=2):
        if r["label"] not in ("safe", "unsafe"):
            raise DataError(path, f"label {r['label']!r} is not safe/unsafe", "fix the label column", row=i)
        out.append(PromptRecord(f"xstest-{r['id']}", r["prompt"], r["label"], r["type"], "xstest"))
    return out


def _stl_set(file: str, label: str, source: str) -> Callable[[Path], list[PromptRecord]]:
    def load(root: Path) -> list[PromptRecord]:
        path = root / "safety-tuned-llamas" / file
        obj = readers.read_json(path)
        instructions = readers.string_list(path, obj, "instructions")
        inputs = obj.get("inputs") or [""] * len(instructions)
        if len(inputs) != len(instructions):
            raise DataError(path, f"{len(instructions)} instructions but {len(inputs)} inputs",
                            "the two lists must be aligned")
        return [
            PromptRecord(f"{source}-{i}", f"{ins}\n{inp}".strip() if inp else ins, label, source, source)
            for i, (ins, inp) in enumerate(zip(instructions, inputs))
        ]

    return load


def _csv_prompts(rel: str, label: str, source: str, col: str = "prompt",
                 type_col: str | None = None) -> Callable[[Path], list[PromptRecord]]:
    def load(root: Path) -> list[PromptRecord]:
        rows = readers.read_csv(root / rel, (col, type_col) if type_col else (col,))
        return [PromptRecord(f"{source}-{i}", r[col].strip(), label, r[type_col] if type_col else "", source)
                for i, r in enumerate(rows)]

    return load


def _coconot(root: Path) -> list[PromptRecord]:
    path = root / "coconot" / "coconot_contrast_eval.jsonl"
    out = []
    for i, row in enumerate(readers.read_jsonl(path), start=1):
        prompt = readers.require_str(path, row, "prompt", i)
        out.append(PromptRecord(f"coconot-{readers.require_str(path, row, 'id', i)}", prompt, "safe",
                                readers.require_str(path, row, "subcategory", i), "coconot"))
    return out


PHTEST_HUB = "furonghuang-lab/PHTest"


def hub_dataset(hub_id: str, name: str, fix: str, split: str = "train", subset: str | None = None) -> Any:
    """``datasets.load_dataset(hub_id, name=subset, split=split)`` when the hub answers (``dcr.models.hub_reachable``).

    Unreachable: ``BenchmarkMissing(name)`` ending in ``fix`` (not transient: offline it never loads); reachable
    but the load fails: a transient ``BenchmarkMissing`` (a stage that met it runs again next time).
    """
    from dcr import models

    reason = models.hub_reachable()
    if reason is not None:
        raise BenchmarkMissing(name, f"{hub_id} is only on the Hugging Face Hub and the hub cannot be reached "
                                     f"({reason}); no offline copy is in the data directory. Fix: {fix}")
    try:
        import datasets

        return datasets.load_dataset(hub_id, split=split, **({"name": subset} if subset else {}))
    except Exception as exc:  # network, auth or name problems all end here
        raise BenchmarkMissing(name, f"could not load {hub_id!r} from the hub ({type(exc).__name__}: {exc})",
                               transient=True) from None


def hub_columns(ds: Any, hub_id: str, columns: tuple[str, ...]) -> None:
    """DataError naming the dataset when a loaded hub dataset lacks one of ``columns``."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(hub_id, f"no column(s) {missing} (columns: {ds.column_names})",
                        "the hub dataset changed layout; pin an older revision or update the loader")


def _phtest(root: Path) -> list[PromptRecord]:
    """PHTest's 3,269 pseudo-harmful prompts (all should be answered) from the hub; missing offline."""
    ds = hub_dataset(PHTEST_HUB, "phtest", "run with network access to the hub (PHTest then loads from it)")
    hub_columns(ds, PHTEST_HUB, ("Request",))
    ids = ds["ID"] if "ID" in ds.column_names else range(len(ds))
    kinds = ds["Harmfulness"] if "Harmfulness" in ds.column_names else [""] * len(ds)
    return [PromptRecord(f"phtest-{i}", str(t).strip(), "safe", str(k or ""), "phtest")
            for i, t, k in zip(ids, ds["Request"], kinds) if str(t or "").strip()]


OR_BENCH_HUB = "bench-llm/or-bench"


def _or_bench_toxic(root: Path) -> list[PromptRecord]:
    """OR-Bench-Toxic's toxic prompts (all should be refused) from the hub (``or-bench-toxic``); missing offline."""
    ds = hub_dataset(OR_BENCH_HUB, "or-bench-toxic", "run with network access to the hub (it then loads from it)",
                     subset="or-bench-toxic")
    hub_columns(ds, OR_BENCH_HUB, ("prompt",))
    kinds = ds["category"] if "category" in ds.column_names else [""] * len(ds)
    return [PromptRecord(f"or-bench-toxic-{i}", str(t).strip(), "unsafe", str(k or ""), "or-bench-toxic")
            for i, (t, k) in enumerate(zip(ds["prompt"], kinds)) if str(t or "").strip()]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str  # over-refusal | safety | mixed | benign
    description: str
    loader: Callable[[Path], list[PromptRecord]]
    hub_id: str = ""


def _xstest_part(part: int) -> Callable[[Path], list[PromptRecord]]:
    def load(root: Path) -> list[PromptRecord]:
        from dcr.data.training import xstest_split

        return list(xstest_split(0.2, 0, root)[part])

    return load


def _hh_rlhf(root: Path) -> list[PromptRecord]:
    from dcr.data.training import load_hh_harmful

    return load_hh_harmful(root)


SAFETY_SETS = ("malicious-instructions", "cona", "controversial", "harmfulq", "advbench")
OVER_REFUSAL_SETS = ("xstest-safe", "coconot", "or-bench", "oktest", "phtest")

BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec("xstest", "mixed", "XSTest v2: 250 safe + 200 unsafe prompts", _xstest),
        BenchmarkSpec("xstest-safe", "over-refusal", "XSTest safe prompts (250)",
                      lambda r: [x for x in _xstest(r) if x.label == "safe"]),
        BenchmarkSpec("xstest-unsafe", "safety", "XSTest unsafe contrast prompts (200)",
                      lambda r: [x for x in _xstest(r) if x.label == "unsafe"]),
        BenchmarkSpec("xstest-safe-indist", "over-refusal", "XSTest safe, in-distribution part of the default "
                      "split (200; xstest_heldout_frac 0.2, split_seed 0): what refine and STL-aug train on",
                      _xstest_part(0)),
        BenchmarkSpec("xstest-safe-heldout", "over-refusal", "XSTest safe, held-out part of the default split "
                      "(50; xstest_heldout_frac 0.2, split_seed 0): never trained on at those settings",
                      _xstest_part(1)),
        BenchmarkSpec("hh-rlhf", "safety", "HH-RLHF harmless-base test first turns (2,178): refine's toxic pool, "
                      "training-side (for probes and layer choice, not an evaluation set)", _hh_rlhf),
        BenchmarkSpec("coconot", "over-refusal", "CoCoNot contrast set (379)", _coconot),
        BenchmarkSpec("or-bench", "over-refusal", "OR-Bench-Hard-1K (1,319)",
                      _csv_prompts("or-bench/or-bench-hard-1k.csv", "safe", "or-bench", type_col="category")),
        BenchmarkSpec("oktest", "over-refusal", "OKTest (300)", _csv_prompts("oktest/OKTest.csv", "safe", "oktest")),
        BenchmarkSpec("phtest", "over-refusal", "PHTest (3,269; from the hub)", _phtest, hub_id=PHTEST_HUB),
        BenchmarkSpec("or-bench-toxic", "safety", "OR-Bench-Toxic (about 655; from the hub, subset or-bench-toxic)",
                      _or_bench_toxic, hub_id=OR_BENCH_HUB),
        BenchmarkSpec("malicious-instructions", "safety", "I-MaliciousInstructions (100)",
                      _stl_set("I-MaliciousInstructions.json", "unsafe", "malicious-instructions")),
        BenchmarkSpec("cona", "safety", "I-CoNa (178)", _stl_set("I-CoNa.json", "unsafe", "cona")),
        BenchmarkSpec("controversial", "safety", "I-Controversial (40)",
                      _stl_set("I-Controversial.json", "unsafe", "controversial")),
        BenchmarkSpec("harmfulq", "safety", "HarmfulQ / Q-Harm (100)", _stl_set("Q-Harm.json", "unsafe", "harmfulq")),
        BenchmarkSpec("advbench", "safety", "AdvBench harmful behaviours (520)",
                      _csv_prompts("advbench/harmful_behaviors.csv", "unsafe", "advbench", col="goal")),
        BenchmarkSpec("safety", "safety", "the five safety sets pooled (938)",
                      lambda r: [x for n in SAFETY_SETS for x in BENCHMARKS[n].loader(r)]),
        BenchmarkSpec("i-alpaca", "benign", "STL I-Alpaca benign instructions (50)",
                      _stl_set("I-Alpaca.json", "safe", "i-alpaca")),
        BenchmarkSpec("physical-safety-safe", "over-refusal", "STL physical-safety safe (100)",
                      _stl_set("I-PhysicalSafetySafe.json", "safe", "physical-safety-safe")),
        BenchmarkSpec("physical-safety-unsafe", "safety", "STL physical-safety unsafe (100)",
                      _stl_set("I-PhysicalSafetyUnsafe.json", "unsafe", "physical-safety-unsafe")),
    )
}


def subsample(records: list[PromptRecord], limit: int | None, seed: int = 0) -> list[PromptRecord]:
    """A seeded subsample of ``limit`` records, in original order (``None`` keeps all)."""
    if limit is None or limit >= len(records):
        return list(records)
    if limit < 1:
        raise DcrError(f"limit must be >= 1, got {limit}")
    keep = set(random.Random(seed).sample(range(len(records)), limit))
    return [r for i, r in enumerate(records) if i in keep]


def load_hub(spec: str) -> list[PromptRecord]:
    """``hf:OWNER/NAME[:SPLIT[:COLUMN[:LABEL]]]`` through ``datasets`` (needs network)."""
    from dcr.specs import parse_hub

    parsed = parse_hub(spec)
    hub_id, split, col, label = parsed.hub_id, parsed.split, parsed.column, parsed.label
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # network, auth or name problems all end here
        raise BenchmarkMissing(spec, f"could not load {hub_id!r} from the hub ({type(exc).__name__}: {exc})",
                               transient=True) from None
    if col not in ds.column_names:
        raise DataError(hub_id, f"no column {col!r} (columns: {ds.column_names})", "name the column: hf:ID:SPLIT:COL")
    return [PromptRecord(f"{hub_id}-{i}", str(t), label, "", hub_id) for i, t in enumerate(ds[col]) if str(t).strip()]


def load_benchmark(name: str, root: str | Path | None = None, limit: int | None = None,
                   seed: int = 0) -> list[PromptRecord]:
    """Load a registered benchmark (or ``hf:...``), optionally a seeded subsample of ``limit``."""
    if name.startswith("hf:"):
        return subsample(load_hub(name), limit, seed)
    if name not in BENCHMARKS:
        raise DcrError(f"unknown benchmark {name!r}. Known: {', '.join(BENCHMARKS)}, or hf:OWNER/NAME")
    records = BENCHMARKS[name].loader(data_dir(root))
    return subsample(records, limit, seed)
