"""``dcr run EXP.yaml``: expand an experiment into a DAG of stages, share identical ones, run them, resume.

Every stage lives in ``RUN_DIR/stages/<stage>-<key>`` where ``key`` hashes the stage's config with upstream
stage directories replaced by the upstream node ids, so the name does not depend on where RUN_DIR lies and
two methods that need the same stage (the STL model behind stl, surgical and scans) get the same directory.
The stage functions skip themselves when their ``manifest.json`` is done with the same key, so a rerun is
cheap and an interrupted run resumes at the first unfinished stage.

See ``docs/pipeline.md`` for the experiment file schema.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.config import build_config, config_hash, read_yaml
from dcr.errors import ConfigError, DcrError
from dcr.io import read_json, read_jsonl, write_json, write_jsonl
from dcr.stage import MANIFEST

log = logging.getLogger("dcr.pipeline")

STAGES = ("refine", "align", "steer", "evaluate")
# method -> (refine first?, align method or None, steer method or None)
METHODS: dict[str, tuple[bool, str | None, str | None]] = {
    "base": (False, None, None),
    "stl": (False, "stl", None),
    "stl-aug": (False, "stl-aug", None),
    "dcr+stl": (True, "stl", None),
    "dcr+stl-aug": (True, "stl-aug", None),
    "surgical": (False, "stl", "surgical"),
    "scans": (False, "stl", "scans"),
}
# fields shared by every stage; set at the top level of the experiment file
COMMON = ("data_dir", "dtype", "device", "template", "xstest_heldout_frac", "split_seed")
SPLIT_FIELDS = ("xstest_heldout_frac", "split_seed")
# fields the pipeline sets itself (a section that sets them is an error)
OWNED = {"refine": ("model", "seed"), "align": ("model", "seed", "method", "exclude_from"),
         "steer": ("model", "seed", "method"), "evaluate": ("model", "steer", "tags", "benchmarks")}
# `sizes:` shorthands -> (section, field)
SIZES: dict[str, tuple[str, str]] = {
    "refine_limit": ("refine", "limit"), "refine_epochs": ("refine", "epochs"),
    "align_general": ("align", "n_general"), "align_safety": ("align", "n_safety"),
    "align_epochs": ("align", "epochs"), "teacher_max_new_tokens": ("align", "teacher_max_new_tokens"),
    "steer_prompts": ("steer", "n_directions"),
    "eval_limit": ("evaluate", "limit"), "max_new_tokens": ("evaluate", "max_new_tokens"),
}
SECTIONS = ("refine", "align", "steer", "surgical", "scans", "evaluate")
TOP_KEYS = ("name", "models", "methods", "seeds", "benchmarks", "sizes", "exclude_refine_toxic", *COMMON, *SECTIONS)

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
class ModelSpec:
    """One model of the experiment: its name (embedded name, directory or hub id) and per-model sections."""

    name: str
    sections: dict[str, dict[str, Any]]


@dataclass
class Experiment:
    """A parsed experiment file (see docs/pipeline.md)."""

    name: str
    models: list[ModelSpec]
    methods: list[str]
    seeds: list[int]
    benchmarks: list[str]
    common: dict[str, Any]
    sections: dict[str, dict[str, Any]]
    exclude_refine_toxic: bool = True
    source: str = ""


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key!r} must be a non-empty list, got {value!r}")
    return value


def _section(raw: Any, key: str, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section {key!r} must be a mapping of field: value, got {raw!r}")
    owned = OWNED.get("steer" if key in ("surgical", "scans") else key, ())
    for name in raw:
        if name in owned:
            raise ConfigError(f"{source}: {key}.{name} is set by the pipeline. Fix: remove it (models, seeds, "
                              f"methods and benchmarks are top-level keys)")
        if name in SPLIT_FIELDS:
            raise ConfigError(f"{source}: {key}.{name} must agree across stages. Fix: set it at the top level")
    return dict(raw)


def _models(raw: Any, source: str) -> list[ModelSpec]:
    out = []
    for item in _as_list(raw, "models", source):
        if isinstance(item, str):
            out.append(ModelSpec(item, {}))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{source}: each models entry is a name or a mapping with 'name', got {item!r}")
        extra = set(item) - {"name", *SECTIONS}
        if extra:
            raise ConfigError(f"{source}: model {item['name']!r} has unknown keys {sorted(extra)}. "
                              f"Allowed: name, {', '.join(SECTIONS)}")
        out.append(ModelSpec(item["name"], {k: _section(item.get(k), k, source) for k in SECTIONS}))
    return out


def parse_experiment(data: dict[str, Any], source: str = "experiment") -> Experiment:
    """Validate an experiment mapping; unknown keys, methods and size knobs fail with the allowed values."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}. Allowed: {', '.join(TOP_KEYS)}")
    if "models" not in data:
        raise ConfigError(f"{source}: 'models' is required, e.g. models: [smollm2-135m]")
    methods = [str(m) for m in _as_list(data.get("methods", ["base", "stl", "dcr+stl"]), "methods", source)]
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"{source}: method {m!r} unknown. Fix: use any of {', '.join(METHODS)}")
    seeds = _as_list(data.get("seeds", [0]), "seeds", source)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{source}: seeds must be integers, got {seeds!r}")
    sections = {k: _section(data.get(k), k, source) for k in SECTIONS}
    for knob, value in (data.get("sizes") or {}).items():
        if knob not in SIZES:
            raise ConfigError(f"{source}: sizes.{knob} unknown. Allowed: {', '.join(SIZES)}")
        sec, fld = SIZES[knob]
        if fld in sections[sec]:
            raise ConfigError(f"{source}: sizes.{knob} and {sec}.{fld} both set. Fix: keep one of them")
        sections[sec][fld] = value
    bench = [str(b) for b in _as_list(data.get("benchmarks", ["xstest"]), "benchmarks", source)]
    return Experiment(
        name=str(data.get("name") or Path(source).stem), models=_models(data["models"], source),
        methods=list(dict.fromkeys(methods)), seeds=list(dict.fromkeys(seeds)), benchmarks=bench,
        common={k: data[k] for k in COMMON if k in data}, sections=sections,
        exclude_refine_toxic=bool(data.get("exclude_refine_toxic", True)), source=source)


def load_experiment(path: str | Path) -> Experiment:
    return parse_experiment(read_yaml(path), str(path))


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
        try:
            cfg = build_config(cls, overrides=values)
        except ConfigError as exc:
            sections = "/".join(s for s in SECTIONS if s == stage or (stage == "steer" and s in ("surgical", "scans")))
            raise ConfigError(f"{self.exp.source}: {label}: {exc}. Fix: check the {sections} section(s) and the "
                              "top-level keys") from None
        logical = dataclasses.asdict(cfg)
        for dep in deps:  # upstream directories -> node ids, so keys do not depend on RUN_DIR's location
            logical = {k: (f"@{dep.id}" if v == str(dep.dir) else v) for k, v in logical.items()}
        node_id = f"{stage}-{config_hash(logical, {'stage': stage, 'deps': sorted(d.id for d in deps)})}"
        node = self.nodes.get(node_id)
        if node is None:
            node = Node(node_id, stage, label, cfg, self.run_dir / "stages" / node_id, [d.id for d in deps])
            self.nodes[node_id] = node
        if use not in node.uses:
            node.uses.append(use)
        return node

    def method(self, model: ModelSpec, method: str, seed: int) -> None:
        refine_first, align_method, steer_method = METHODS[method]
        use = {"method": method, "seed": seed, "model": model.name}
        tag = f"{model.name}, seed {seed}"
        current: Node | None = None
        if refine_first:
            values = {**self._fields("refine", model), "model": model.name, "seed": seed}
            current = self.add("refine", f"refine ({tag})", values, [], use)
        if align_method:
            values = {**self._fields("align", model), "model": str(current.dir) if current else model.name,
                      "seed": seed, "method": align_method}
            if values.get("teacher", "self") == "self":
                values["teacher"] = model.name  # every method learns from the same answers (the base model's)
            if current is not None and self.exp.exclude_refine_toxic:
                values["exclude_from"] = str(current.dir)
            on = " on refine" if current else ""
            current = self.add("align", f"align {align_method}{on} ({tag})", values,
                               [current] if current else [], use)
        steer_node: Node | None = None
        if steer_method:
            assert current is not None
            values = {**self._fields("steer", model, steer_method), "model": str(current.dir), "seed": seed,
                      "method": steer_method}
            steer_node = self.add("steer", f"steer {steer_method} ({tag})", values, [current], use)
        values = {**self._fields("evaluate", model), "model": str(current.dir) if current else model.name,
                  "benchmarks": self.exp.benchmarks, "tags": {}}
        if steer_node is not None:
            values["steer"] = str(steer_node.dir)
        deps = [n for n in (current, steer_node) if n is not None]
        label = f"evaluate {method} ({tag})" if deps else f"evaluate {method} ({model.name})"  # base: all seeds
        self.add("evaluate", label, values, deps, use)


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
    return {"id": node.id, "stage": node.stage, "label": node.label, "dir": str(node.dir.relative_to(run_dir)),
            "deps": node.deps, "uses": node.uses, "status": node.status, "wall_time_s": node.wall_time_s,
            "config": dataclasses.asdict(node.cfg)}


def write_plan(exp: Experiment, nodes: list[Node], run_dir: Path) -> None:
    write_json(run_dir / "plan.json", {
        "experiment": exp.name, "source": exp.source, "models": [m.name for m in exp.models],
        "methods": exp.methods, "seeds": exp.seeds, "benchmarks": exp.benchmarks,
        "nodes": [node_json(n, run_dir) for n in nodes]})


def _manifest_state(node: Node) -> tuple[Any, ...] | None:
    path = node.dir / MANIFEST
    if not path.exists():
        return None
    try:
        man = read_json(path)
    except ValueError:
        return None
    return (man.get("status"), man.get("key"), path.stat().st_mtime_ns)


Progress = Callable[[int, int, Node, str, float], None]


def _no_progress(i: int, n: int, node: Node, status: str, seconds: float) -> None:
    """The default progress callback (run.log gets every event anyway)."""


def run_nodes(nodes: list[Node], run_dir: Path, exp: Experiment, registry: Registry, force: bool = False,
              progress: Progress = _no_progress) -> None:
    """Run each node in order; a failure marks the node failed in plan.json and stops the run."""

    def event(i: int, node: Node, status: str, seconds: float) -> None:
        log.info("stage %d/%d: %s: %s (%.1fs, %s)", i, len(nodes), node.label, status, seconds, node.dir.name)
        progress(i, len(nodes), node, status, seconds)

    for i, node in enumerate(nodes, start=1):
        fn = registry[node.stage][1]
        before = _manifest_state(node)
        if before is None or before[0] != "done":  # a finished stage only reports "skipped" afterwards
            event(i, node, "running", 0.0)
        start = time.time()
        try:
            fn(node.cfg, node.dir, force=force)
        except BaseException as exc:
            node.status = "failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted"
            write_plan(exp, nodes, run_dir)
            event(i, node, node.status, time.time() - start)
            log.exception("stage %s failed; see %s", node.label, node.dir / "stage.log")
            if isinstance(exc, DcrError):
                raise DcrError(f"stage {i}/{len(nodes)} {node.label} failed ({node.dir}): {exc}") from exc
            raise
        after = _manifest_state(node)
        node.status = "skipped" if before is not None and before == after and before[0] == "done" else "done"
        node.wall_time_s = round(time.time() - start, 3)
        write_plan(exp, nodes, run_dir)
        if node.stage == "evaluate":
            collect_results(nodes, run_dir)  # keep results.jsonl current, so `dcr report` works mid-run
        event(i, node, node.status, node.wall_time_s)


def collect_results(nodes: list[Node], run_dir: Path) -> int:
    """RUN_DIR/results.jsonl: every evaluate record tagged with method, seed and model, plus missing benchmarks."""
    rows: list[dict[str, Any]] = []
    for node in nodes:
        state = _manifest_state(node)
        if node.stage != "evaluate" or state is None or state[0] != "done":
            continue  # only finished evaluations (a partial report after an interruption stays honest)
        records = read_jsonl(node.dir / "results.jsonl")
        metrics = node.dir / "metrics.json"
        missing = read_json(metrics).get("missing", {}) if metrics.exists() else {}
        for use in node.uses:
            for rec in records:
                rows.append({**rec, "model_path": rec.get("model"), **use, "stage": node.id})
            for bench, reason in missing.items():
                rows.append({"benchmark": bench, "metric": "missing", "reason": reason, "value": None, **use,
                             "stage": node.id})
    write_jsonl(run_dir / "results.jsonl", rows)
    return len(rows)


class _RunLog:
    """Send every ``dcr.*`` log record (the pipeline's and each stage's) to RUN_DIR/run.log while running."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger("dcr")

    def __enter__(self) -> _RunLog:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()


def run_experiment(exp: Experiment, run_dir: str | Path, registry: Registry | None = None, force: bool = False,
                   progress: Progress = _no_progress, report: bool = True) -> list[Node]:
    """Plan, run every stage (skipping finished ones), collect results.jsonl and write the report."""
    registry = registry or default_registry()
    run_path = Path(run_dir).resolve()
    run_path.mkdir(parents=True, exist_ok=True)
    nodes = plan(exp, run_path, registry)
    write_plan(exp, nodes, run_path)
    with _RunLog(run_path / "run.log"):
        log.info("experiment %s (%s): %d stages in %s", exp.name, exp.source, len(nodes), run_path)
        run_nodes(nodes, run_path, exp, registry, force, progress)
        n = collect_results(nodes, run_path)
        log.info("collected %d result records into %s", n, run_path / "results.jsonl")
        if report:
            from dcr.report import report as write_report

            paths = write_report(run_path)
            log.info("report written: %s", ", ".join(str(p) for p in paths))
    return nodes
