"""The experiment file: parsing, validation, and the recipe of stages behind each method name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcr.config import field, read_yaml
from dcr.errors import ConfigError
from dcr.validate import validate_fields

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
            "reference", "stage_processes", "evaluate_processes",
            *COMMON, *SECTIONS)

@dataclass
class ModelSpec:
    """One model of the experiment: its name (embedded name, directory or hub id) and per-model sections."""

    name: str
    sections: dict[str, dict[str, Any]]


@dataclass
class Experiment:
    """A parsed experiment file (see docs/pipeline.md). The top-level fields declare what they accept beside
    themselves, as stage configs do (``dcr.config.field``), and :func:`parse_experiment` checks them with
    :func:`dcr.validate.validate_fields`; the sections become stage configs, checked when the plan is built."""

    name: str = field(help="the experiment's name (default: the file's stem)", nonempty=True)
    models: list[ModelSpec] = field(help="models: embedded names, directories or hub ids, each maybe with "
                                    "per-model sections", nonempty=True)
    methods: list[str] = field(help="methods to run", nonempty=True, choices=tuple(METHODS))
    seeds: list[int] = field(help="training seeds", nonempty=True, ge=0)
    benchmarks: list[str] = field(help="benchmarks and groups to evaluate", nonempty=True)
    common: dict[str, Any] = field(help="fields shared by every stage (top-level keys)")
    sections: dict[str, dict[str, Any]] = field(help="per-stage fields")
    exclude_refine_toxic: bool = field(True, help="align on a refined model drops refine's toxic prompts")
    source: str = field("", help="where the experiment came from (the file, with its --set overrides)")
    stages_dir: str | None = field(None, help="where stage directories live (default RUN_DIR/stages); shared by "
                                   "ablations", nonempty=True)
    reference: str = field("", help="a note the report prints first: what a reader should compare this run's "
                           "numbers with")
    stage_processes: bool = field(False, help="run each stage in its own process (dcr.pipeline.child)")
    evaluate_processes: int = field(1, help=(
        "run each evaluate stage data-parallel in this many processes under torchrun (gloo on CPU), each with "
        "its share of the threads: the generation batches and the general-ability and heldout-nll scoring batches "
        "are dealt round-robin and gathered in plan order (docs/scale.md). The stage key does not change, so a "
        "stage evaluated either way is reused; greedy text and scores can differ on single prompts with the "
        "threads per process (BENCHMARKS.md), and the manifest's host records both"), ge=1, le=64)


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key!r} must be a non-empty list, got {value!r}. Fix: give {key} one value "
                          f"or more, e.g. {key}: [...]")
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
    methods = _as_list(data.get("methods", ["base", "stl", "dcr+stl"]), "methods", source)
    seeds = _as_list(data.get("seeds", [0]), "seeds", source)
    sections = {k: _section(data.get(k), k, source) for k in SECTIONS}
    for knob, value in (data.get("sizes") or {}).items():
        if knob not in SIZES:
            raise ConfigError(f"{source}: sizes.{knob} unknown. Allowed: {', '.join(SIZES)}")
        sec, fld = SIZES[knob]
        if fld in sections[sec]:
            raise ConfigError(f"{source}: sizes.{knob} and {sec}.{fld} both set. Fix: keep one of them")
        sections[sec][fld] = value
    name = data["name"] if data.get("name") is not None else Path(source).stem
    exp = Experiment(
        name=name, models=_models(data["models"], source),
        methods=methods, seeds=seeds, benchmarks=_as_list(data.get("benchmarks", ["xstest"]), "benchmarks", source),
        common={k: data[k] for k in COMMON if k in data}, sections=sections,
        exclude_refine_toxic=data.get("exclude_refine_toxic", True), source=source,
        stages_dir=data.get("stages_dir"), reference=data.get("reference") or "",
        stage_processes=data.get("stage_processes", False), evaluate_processes=data.get("evaluate_processes", 1))
    try:
        validate_fields(exp)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    exp.methods, exp.seeds = list(dict.fromkeys(exp.methods)), list(dict.fromkeys(exp.seeds))
    exp.reference = exp.reference.strip()
    return exp


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
