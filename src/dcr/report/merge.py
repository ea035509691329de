"""``dcr report RUN_DIR RUN_DIR ... --out DIR``: one report over several run directories (e.g. seeds run apart).

The merged directory gets a plan.json whose stage entries point at the original stage directories (absolute
paths, each stage once) and a results.jsonl with every run's records; the report is then built from it as from
one run. Nothing in the original run directories is changed.

"Each stage once" means each *computation* once. A stage id is a hash of its config, and a config can leave
something to the host (``dtype: auto`` is bf16 on a CPU with bf16 matmul, fp32 elsewhere), so two runs can hold
the same id computed twice, e.g. the base model's evaluation (it has no seed) of seeds run on different machines.
Copies of one computation (an archive of a run, an evaluation shared between seeds) keep its manifest's
``started``; a different ``started`` is a different computation, kept as its own node (``ID@RUN``) with its own
uses, so each seed's paired comparisons read the evaluation that seed's run made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcr.errors import DcrError
from dcr.io import atomic_open, read_json, write_json
from dcr.results import RESULTS, load_checked
from dcr.stage import read_manifest


def _union(values: list[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for vs in values:
        out += [v for v in vs if v not in out]
    return out


def _computation(node: dict[str, Any]) -> str:
    """What tells two computations of one stage id apart: its manifest's ``started`` ("" when unreadable)."""
    manifest = read_manifest(node["dir"])
    return str(manifest.get("started", "")) if manifest else ""


def _add_plan(nodes: dict[str, Any], plan: dict[str, Any], run: Path) -> None:
    """Add ``plan``'s nodes to ``nodes``: a copy of a computation already there adds its uses to it; another
    computation under a known id is renamed ``ID@RUN`` (and so are the deps that name it in this plan)."""
    renamed: dict[str, str] = {}
    for node in plan.get("nodes", []):
        seen = nodes.get(node["id"])
        if seen is not None and _computation(seen) != _computation(node):
            renamed[node["id"]] = f"{node['id']}@{run}"
    for node in plan.get("nodes", []):
        node["deps"] = [renamed.get(d, d) for d in node.get("deps", [])]
        node["id"] = renamed.get(node["id"], node["id"])
        seen = nodes.setdefault(node["id"], node)
        if seen is not node:
            seen["uses"] = _union([seen.get("uses", []), node.get("uses", [])])


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
    for plan, run in zip(plans, run_dirs, strict=True):
        _add_plan(nodes, plan, run)
    merged = {"experiment": " + ".join(_union([[p.get("experiment", "?")] for p in plans])),
              "source": ", ".join(str(r) for r in run_dirs), "nodes": list(nodes.values()),
              **{k: _union([p.get(k, []) for p in plans]) for k in ("models", "methods", "seeds", "benchmarks")}}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", merged)
    unique = list({json.dumps(r, sort_keys=True): r for r in rows}.values())
    with atomic_open(out / RESULTS) as fh:
        fh.writelines(json.dumps(r) + "\n" for r in unique)
    return out
