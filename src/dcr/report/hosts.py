"""The report's warning for stages whose ``dtype: auto`` resolved differently (issue 27/28: the machine changes).

``dtype: auto`` means bf16 on a GPU or on a CPU with AMX / avx512_bf16, and fp32 elsewhere. Stage ids key the
configured value, not the resolved one, so one run, or the seeds merged into one report, can hold stages computed in
different dtypes when they ran on different machines. Every stage's manifest records what ``auto`` meant where it
ran (``host.auto_dtype``, :func:`dcr.stage.host_record`); :func:`dtype_warnings` names the mix before any table.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from dcr.io import read_json
from dcr.report.paired import finished_files
from dcr.report.render import Block, Para

UNRECORDED = "not recorded (stage predates the record)"


def auto_dtypes(run_dir: Path, plan: dict[str, Any]) -> dict[str, list[str]]:
    """{resolved dtype: [stage dirs]} over the finished stages configured with ``dtype: auto``."""
    out: dict[str, list[str]] = defaultdict(list)
    for node, manifest in finished_files(run_dir, plan, "manifest.json"):
        if (node.get("config") or {}).get("dtype") == "auto":
            out[str((manifest.get("host") or {}).get("auto_dtype") or UNRECORDED)].append(str(node.get("dir")))
    return dict(out)


def dtype_summary(run_dir: Path, plan: dict[str, Any]) -> str:
    """One line for a results table: what ``dtype: auto`` resolved to in the run's finished stages, with counts
    (``bfloat16 (7)``, ``bfloat16 (5); not recorded (...) (2)``), or ``no dtype: auto stage``."""
    seen = auto_dtypes(run_dir, plan)
    return "; ".join(f"{d} ({len(dirs)})" for d, dirs in sorted(seen.items())) or "no dtype: auto stage"


def dtype_table(runs: list[Path]) -> str:
    """A markdown table, one row per run directory (archives included): its name, seeds and :func:`dtype_summary`;
    what the results readers print first, so every reading says which seed ran in which precision."""
    rows = ["| archive | seeds | `dtype: auto` resolved to (stages) |", "|---|---|---|"]
    for run in runs:
        plan = read_json(run / "plan.json")
        rows.append(f"| {run.name} | {', '.join(str(s) for s in plan.get('seeds', []))} | "
                    f"{dtype_summary(run, plan)} |")
    return "\n".join(rows) + "\n"


def dtype_warnings(run_dir: Path, plan: dict[str, Any]) -> list[Block]:
    """A warning when finished ``dtype: auto`` stages resolved to more than one recorded dtype; a note when one
    recorded dtype sits beside stages that predate the record (they may have resolved it otherwise); nothing when
    all agree or none is recorded."""
    seen = auto_dtypes(run_dir, plan)
    if len(seen) < 2:
        return []
    parts = "; ".join(f"{d}: {len(dirs)} ({', '.join(sorted(dirs)[:3])}{', ...' if len(dirs) > 3 else ''})"
                      for d, dirs in sorted(seen.items()))
    if len([d for d in seen if d != UNRECORDED]) >= 2:
        return [Para(f"**Warning: `dtype: auto` resolved to different dtypes in this run's stages** ({parts}). They "
                     "ran on machines with and without bf16 matmul; rows and paired differences that mix them compare "
                     "models computed in different precisions. Rerun with an explicit `dtype` to pool them.")]
    return [Para("Note: some `dtype: auto` stages of this run predate the record of what `auto` resolved to "
                 f"({parts}). If they ran on a machine with a different answer (bf16 with AMX / avx512_bf16 or a "
                 "GPU, else fp32), rows that mix them compare models computed in different precisions; their "
                 "READMEs say which.")]
