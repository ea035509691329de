"""The experiment file: parsing, validation, and the recipe of stages behind each method name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.config import read_yaml
from dcr.errors import ConfigError

STAGES = ("refine", "align", "steer", "evaluate")


@dataclass(frozen=True)
class Recipe:
    """The stages behind one method: DCR refinement first or not, the align method, the steering method."""

    refine: bool = False
    align: str | None = None
    steer: str | None = None


METHODS: dict[str, Recipe] = {
    "base": Recipe(),
    "dcr": Recipe(refine=True),  # the refined model alone, before STL: what refinement did to the model itself
    "stl": Recipe(align="stl"),
    "stl-aug": Recipe(align="stl-aug"),
    "dcr+stl": Recipe(refine=True, align="stl"),
    "dcr+stl-aug": Recipe(refine=True, align="stl-aug"),
    "surgical": Recipe(align="stl", steer="surgical"),
    "scans": Recipe(align="stl", steer="scans"),
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
TOP_KEYS = ("name", "models", "methods", "seeds", "benchmarks", "sizes", "exclude_refine_toxic", "stages_dir",
            "reference", "stage_processes",
            *COMMON, *SECTIONS)

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
    stages_dir: str | None = None  # where stage directories live (default RUN_DIR/stages); shared by ablations
    reference: str = ""  # a note the report prints first: what a reader should compare this run's numbers with
    stage_processes: bool = False  # run each stage in its own process (dcr.pipeline.child)


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key!r} must be a non-empty list, got {value!r}")
    return value


def _flag(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key!r} must be true or false, got {value!r}")
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
    reference = data.get("reference") or ""
    if not isinstance(reference, str):
        raise ConfigError(f"{source}: 'reference' must be a string (a note for the report), got {reference!r}")
    return Experiment(
        name=str(data.get("name") or Path(source).stem), models=_models(data["models"], source),
        methods=list(dict.fromkeys(methods)), seeds=list(dict.fromkeys(seeds)), benchmarks=bench,
        common={k: data[k] for k in COMMON if k in data}, sections=sections,
        exclude_refine_toxic=bool(data.get("exclude_refine_toxic", True)), source=source,
        stages_dir=str(data["stages_dir"]) if data.get("stages_dir") else None, reference=reference.strip(),
        stage_processes=_flag(data.get("stage_processes", False), "stage_processes", source))


def apply_sets(data: dict[str, Any], sets: list[str], source: str) -> dict[str, Any]:
    """``--set KEY=VALUE`` on an experiment mapping: KEY is a top-level key or SECTION.FIELD (``refine.layer``,
    ``sizes.refine_epochs``); VALUE is read as YAML (``seeds=[0]``, ``refine.lora=true``)."""
    import yaml

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE. Fix: e.g. --set refine.layer=8")
        value = yaml.safe_load(raw)
        head, _, field = key.strip().partition(".")
        if field:
            if out.get(head) is not None and not isinstance(out[head], dict):
                raise ConfigError(f"--set {item!r}: {head} is not a section of {source}")
            out[head] = {**(out.get(head) or {}), field: value}
        else:
            out[head] = value
    return out


def load_experiment(path: str | Path, sets: list[str] | None = None) -> Experiment:
    source = str(path) + (f" with --set {' '.join(sets)}" if sets else "")
    return parse_experiment(apply_sets(read_yaml(path), sets or [], str(path)), source)
