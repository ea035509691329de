"""The stage DAG of an experiment: one node per distinct stage run, shared by every method that needs it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.config import build_config, config_hash, keyed_dict
from dcr.errors import ConfigError
from dcr.io import write_json
from dcr.pipeline.experiment import METHODS, SECTIONS, STAGES, Experiment, ModelSpec

StageFn = Callable[..., Path]
Registry = dict[str, tuple[type, StageFn]]


def default_registry() -> Registry:
    """The real stages (imported lazily: torch and transformers load only when a run starts)."""
    from dcr.align import AlignConfig, align
    from dcr.evaluate import EvaluateConfig, evaluate
    from dcr.refine import RefineConfig, refine
    from dcr.steer import SteerConfig, steer

    return {"refine": (RefineConfig, refine), "align": (AlignConfig, align), "steer": (SteerConfig, steer),
            "evaluate": (EvaluateConfig, evaluate)}


@dataclass
class Node:
    """One stage run: config, output directory, upstream node ids and the (method, seed, model) using it."""

    id: str
    stage: str
    label: str
    cfg: Any
    dir: Path
    deps: list[str]
    uses: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "pending"
    wall_time_s: float | None = None


class Planner:
    """Builds the deduplicated stage DAG of an experiment, in execution order."""

    def __init__(self, exp: Experiment, run_dir: Path, registry: Registry) -> None:
        self.exp, self.run_dir, self.registry = exp, run_dir, registry
        self.stages = Path(exp.stages_dir).expanduser().resolve() if exp.stages_dir else run_dir / "stages"
        self.nodes: dict[str, Node] = {}

    def _fields(self, stage: str, model: ModelSpec, extra_section: str | None = None) -> dict[str, Any]:
        cls = self.registry[stage][0]
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in self.exp.common.items() if k in names}
        for sec in (stage, extra_section):
            if sec:
                values.update(self.exp.sections.get(sec, {}))
                values.update(model.sections.get(sec, {}))
        return values

    def add(self, stage: str, label: str, values: dict[str, Any], deps: list[Node], use: dict[str, Any]) -> Node:
        cls = self.registry[stage][0]
        sections = "/".join(s for s in SECTIONS if s == stage or (stage == "steer" and s in ("surgical", "scans")))
        try:
            cfg = build_config(cls, overrides=values, source=f"{self.exp.source} ({sections} section or top level)")
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}. Fix: correct that key in {self.exp.source}") from None
        logical = keyed_dict(cfg)
        for dep in deps:  # upstream directories -> node ids, so keys do not depend on RUN_DIR's location
            logical = {k: (f"@{dep.id}" if v == str(dep.dir) else v) for k, v in logical.items()}
        node_id = f"{stage}-{config_hash(logical, {'stage': stage, 'deps': sorted(d.id for d in deps)})}"
        node = self.nodes.get(node_id)
        if node is None:
            node = Node(node_id, stage, label, cfg, self.stages / node_id, [d.id for d in deps])
            self.nodes[node_id] = node
        if use not in node.uses:
            node.uses.append(use)
        return node

    def method(self, model: ModelSpec, method: str, seed: int) -> None:
        """Add the nodes of one (model, method, seed): the recipe's stages, then evaluate."""
        recipe = METHODS[method]
        use = {"method": method, "seed": seed, "model": model.name}
        tag = f"{model.name}, seed {seed}"
        current: Node | None = None
        if recipe.refine:
            values = {**self._fields("refine", model), "model": model.name, "seed": seed}
            current = self.add("refine", f"refine ({tag})", values, [], use)
        if recipe.align:
            current = self._align(model, recipe.align, seed, current, use, tag)
        steer_node: Node | None = None
        if recipe.steer and current is not None:
            values = {**self._fields("steer", model, recipe.steer), "model": str(current.dir), "seed": seed,
                      "method": recipe.steer}
            steer_node = self.add("steer", f"steer {recipe.steer} ({tag})", values, [current], use)
        values = {**self._fields("evaluate", model), "model": str(current.dir) if current else model.name,
                  "benchmarks": self.exp.benchmarks, "tags": {}}
        if steer_node is not None:
            values["steer"] = str(steer_node.dir)
        deps = [n for n in (current, steer_node) if n is not None]
        label = f"evaluate {method} ({tag})" if deps else f"evaluate {method} ({model.name})"  # base: all seeds
        ref = self._quality_reference(model, seed if deps else self.exp.seeds[0], values)
        if ref is not None:
            values["reference"] = str(ref.dir)
            deps += [ref] if ref not in deps else []
        self.add("evaluate", label, values, deps, use)

    def _quality_reference(self, model: ModelSpec, seed: int, values: dict[str, Any]) -> Node | None:
        """The STL stage whose model is alpaca-eval's reference (``reference: stl``, the default), added if no
        method needs it; None without an annotator (then alpaca-eval is reported as not measured)."""
        from dcr.evaluate.config import STL_REFERENCE
        from dcr.evaluate.suite import expand_benchmarks

        if values.get("reference", STL_REFERENCE) != STL_REFERENCE or not values.get("annotator") \
                or "alpaca-eval" not in expand_benchmarks(self.exp.benchmarks):
            return None
        use = {"method": "stl", "seed": seed, "model": model.name}
        return self._align(model, "stl", seed, None, use, f"{model.name}, seed {seed}")

    def _align(self, model: ModelSpec, align_method: str, seed: int, refined: Node | None, use: dict[str, Any],
               tag: str) -> Node:
        values = {**self._fields("align", model), "model": str(refined.dir) if refined else model.name,
                  "seed": seed, "method": align_method}
        if values.get("teacher", "self") == "self":
            values["teacher"] = model.name  # every method learns from the same answers (the base model's)
        if values.get("teacher_cache") is None:  # ... generated once, shared by every align stage of the run
            values["teacher_cache"] = str(self.run_dir / "teacher-cache")
        if refined is not None and self.exp.exclude_refine_toxic:
            values["exclude_from"] = str(refined.dir)
        on = " on refine" if refined else ""
        return self.add("align", f"align {align_method}{on} ({tag})", values, [refined] if refined else [], use)


def plan(exp: Experiment, run_dir: str | Path, registry: Registry | None = None) -> list[Node]:
    """The stage DAG of ``exp`` in execution order, each shared stage once."""
    planner = Planner(exp, Path(run_dir).resolve(), registry or default_registry())
    for model in exp.models:
        for seed in exp.seeds:
            for method in exp.methods:
                planner.method(model, method, seed)
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(planner.nodes.values(), key=lambda n: order[n.stage])  # stable: upstream stages first


def node_json(node: Node, run_dir: Path) -> dict[str, Any]:
    inside = node.dir.is_relative_to(run_dir)  # else a shared stages_dir: the absolute path
    return {"id": node.id, "stage": node.stage, "label": node.label,
            "dir": str(node.dir.relative_to(run_dir) if inside else node.dir),
            "deps": node.deps, "uses": node.uses, "status": node.status, "wall_time_s": node.wall_time_s,
            "config": dataclasses.asdict(node.cfg)}


def write_plan(exp: Experiment, nodes: list[Node], run_dir: Path) -> None:
    write_json(run_dir / "plan.json", {
        "experiment": exp.name, "source": exp.source, "models": [m.name for m in exp.models],
        "methods": exp.methods, "seeds": exp.seeds, "benchmarks": exp.benchmarks,
        **({"reference": exp.reference} if exp.reference else {}),
        "nodes": [node_json(n, run_dir) for n in nodes]})
