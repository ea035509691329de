"""What refinement trained on, read back from every refine stage of a run (``split.json``): which benchmark
families its sources belong to, and which evaluation prompts the paper's data path shares with its training
prompts. The report moves the columns of a trained family out of the never-trained pool (issue 29)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcr.report.paired import finished_files

PAPER_FAMILIES = ("hh-rlhf", "xstest")  # split.json files written before families were recorded
# the evaluation benchmarks of each family (XSTest safe prompts keep their in-distribution / held-out split)
FAMILY_BENCHMARKS = {
    "coconot": ("coconot",),
    "physical-safety": ("physical-safety-safe", "physical-safety-unsafe"),
    "xstest": ("xstest-unsafe",),
    "hh-rlhf": ("hh-rlhf",),
}


@dataclass
class Trained:
    """Families refine trained on, the benchmarks they make in-distribution style, and overlap counts."""

    families: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    overlap: Counter[str] = field(default_factory=Counter)  # evaluation benchmark -> training prompts it holds

    @property
    def benchmarks(self) -> frozenset[str]:
        """Evaluation benchmarks whose prompts are in-distribution style for the refined methods: those of every
        family refine trained on (XSTest safe prompts are split per prompt instead; XSTest unsafe, the contrast
        set written beside them, is in-distribution style even for the paper's DCR)."""
        return frozenset(b for f in self.families for b in FAMILY_BENCHMARKS.get(f, ()))


def trained(run_dir: Path, plan: dict[str, Any]) -> Trained:
    """Read every finished refine stage's split.json in the run."""
    out = Trained()
    for _node, split in finished_files(run_dir, plan, "split.json", "refine"):
        out.families.update(split.get("families") or PAPER_FAMILIES)
        out.sources.update((split.get("sources") or {}).keys())
        out.overlap.update(b for hits in (split.get("evaluation_overlap") or {}).values() for b in hits)
    return out


def note(t: Trained) -> str | None:
    """The report's sentence about it, or None when refine trained on the paper's sources without overlap."""
    parts = []
    if t.benchmarks - {"hh-rlhf"}:
        what = f"the sources {', '.join(sorted(t.sources))}" if t.sources else "the paper's sources"
        parts.append(f"Refinement trained on {what} (families {', '.join(sorted(t.families))}): the columns of "
                     f"{', '.join(sorted(t.benchmarks - {'hh-rlhf'}))} hold prompts of the same family "
                     "(in-distribution style) for the refined methods and are left out of the never-trained pool.")
    if t.overlap:
        shared = ", ".join(f"{b} {n}" for b, n in sorted(t.overlap.items()))
        parts.append(f"The paper's refine data shares prompts with evaluation sets (training prompts per set, summed "
                     f"over seeds: {shared}); those prompts were seen by refinement (split.json evaluation_overlap).")
    return " ".join(parts) or None
