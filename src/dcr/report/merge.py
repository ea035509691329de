"""``dcr report RUN_DIR RUN_DIR ... --out DIR``: one report over several run directories (e.g. seeds run apart).

The merged directory gets a plan.json whose stage entries point at the original stage directories (absolute
paths, each stage once) and a results.jsonl with every run's records; the report is then built from it as from
one run. Nothing in the original run directories is changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import atomic_open, read_json, write_json
from dcr.results import RESULTS, load_checked


def _union(values: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for vs in values:
        out += [v for v in vs if v not in out]
    return out


def merge_runs(run_dirs: list[Path], out: Path) -> Path:
    """Write ``out/plan.json`` and ``out/results.jsonl`` combining ``run_dirs``; returns ``out``."""
    plans, rows = [], []
    for run in run_dirs:
        if not (run / "plan.json").is_file():
            raise DcrError(f"{run}: no plan.json. Fix: pass directories written by `dcr run`")
        plan = read_json(run / "plan.json")
        for node in plan.get("nodes", []):
            node["dir"] = str((run / node["dir"]).resolve())
        plans.append(plan)
        if (run / RESULTS).exists():
            rows += load_checked(run / RESULTS)[0]
    nodes: dict[str, Any] = {}
    for plan in plans:
        for node in plan.get("nodes", []):
            seen = nodes.setdefault(node["id"], node)
            if seen is not node:
                seen["uses"] = _union([seen.get("uses", []), node.get("uses", [])])
    merged = {"experiment": " + ".join(_union([[p.get("experiment", "?")] for p in plans])),
              "source": ", ".join(str(r) for r in run_dirs), "nodes": list(nodes.values()),
              **{k: _union([p.get(k, []) for p in plans]) for k in ("models", "methods", "seeds", "benchmarks")}}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", merged)
    unique = list({json.dumps(r, sort_keys=True): r for r in rows}.values())
    with atomic_open(out / RESULTS) as fh:
        fh.writelines(json.dumps(r) + "\n" for r in unique)
    return out
