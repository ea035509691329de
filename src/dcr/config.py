"""Typed stage configs: defaults < YAML < CLI overrides, with a stable hash per config.

Every stage owns one dataclass (``RefineConfig``, ``AlignConfig``...) whose fields carry a
``help`` string in their metadata and whose ``__post_init__`` validates values.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from dcr.errors import ConfigError
from dcr.prompts import TEMPLATES

T = TypeVar("T")


_NO_LEGACY = object()


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
          keyed: bool = True, legacy: Any = _NO_LEGACY, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: tuple[Any, ...] | None = None,
          nonempty: bool = False, path: str | None = None, layer: str | None = None) -> Any:
    """A dataclass field with a help string (shown by ``dcr ... --help`` and the docs). ``keyed=False`` marks a
    field that only says *where* something is kept (a cache location), never *what* is computed: it is left
    out of config hashes and stage keys, so moving that location never re-runs a stage.

    ``legacy``: for a field added after stages were already keyed, the value that reproduces the behaviour from
    before the field existed. At that value the field is left out of the key, so finished stages keep their
    keys (and are reused) when set to it; every other value, the new default included, is keyed.

    What the field accepts, declared once beside it and checked by :func:`dcr.validate.validate_fields` before a
    stage loads anything: ``ge``/``gt``/``le``/``lt`` bounds of a number (every number must also be finite),
    ``choices`` of a string, ``nonempty`` for a string or list (a list's items are checked against the bounds
    and choices too). None (for an optional field) is always accepted. ``path``: what a path field names, checked
    by :func:`dcr.validate.validate_paths` before a stage runs: ``file`` / ``dir`` (must exist, be that kind and
    be readable) or ``cache-dir`` (a directory, or creatable, and writable). ``layer``: ``index`` (a block index,
    or a list of them) or ``count`` (a number of blocks), checked against the model's config by
    :func:`dcr.validate.validate_layers` before weights load."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    kw: dict[str, Any] = {"metadata": {"help": help, "keyed": keyed, "legacy": legacy, "bounds": bounds,
                                       "choices": choices, "nonempty": nonempty, "path": path,
                                       "layer": layer}}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, **kw)
    return dataclasses.field(default=default, **kw)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def keyed_dict(cfg: Any) -> dict[str, Any]:
    """The config's fields that decide what a stage computes (every field not marked ``keyed=False``, and none
    left at its ``legacy`` value)."""
    return {f.name: v for f, v in ((f, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))
            if f.metadata.get("keyed", True) and not _is_legacy(f, v)}


def _is_legacy(f: dataclasses.Field[Any], value: Any) -> bool:
    legacy = f.metadata.get("legacy", _NO_LEGACY)
    return legacy is not _NO_LEGACY and value == legacy


def config_hash(cfg: Any, extra: dict[str, Any] | None = None) -> str:
    """A short stable hash of a config (and of extra inputs such as upstream stage keys)."""
    from dcr.fingerprint import short_hash

    return short_hash({"config": keyed_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, "extra": extra or {}})


def _fix(name: str, value: Any) -> str:
    """The fix for a value of the wrong type: a YAML mapping where text was meant is a colon left unquoted."""
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value)):
        return f"quote the value of {name} (YAML reads 'a:' or 'a: b' as a mapping), e.g. '[\"hf:OWNER/NAME\"]'"
    return f"give {name} a value of that type (dcr ... --help lists each field)"


def _coerce(value: Any, tp: Any, name: str, source: str) -> Any:
    """Coerce a YAML/CLI value to the annotated field type, or raise a clear ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        for arg in inner:
            try:
                return _coerce(value, arg, name, source)
            except ConfigError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in inner)
        null = " (or null)" if type(None) in args else ""
        raise ConfigError(f"{source}: field {name!r} must be {names}{null}, got {value!r}. Fix: {_fix(name, value)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: field {name!r} must be a list, got {value!r}. Fix: {_fix(name, value)}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, name, source) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: field {name!r} must be a mapping, got {value!r}. Fix: {_fix(name, value)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{source}: field {name!r} must be true/false, got {value!r}. Fix: {_fix(name, value)}")
    if tp in (int, float, str):
        if isinstance(value, (bool, list, tuple, dict)) and not (tp is str and isinstance(value, bool)):
            # int(True) == 1 and str([1, 2]) == "[1, 2]" would silently accept a wrong YAML value
            raise ConfigError(f"{source}: field {name!r} must be {tp.__name__}, got {value!r}. "
                              f"Fix: {_fix(name, value)}")
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: field {name!r} must be {tp.__name__}, got {value!r}. "
                              f"Fix: {_fix(name, value)}") from None
    return value


def _is_str_field(tp: Any) -> bool:
    """``str`` or ``str | None``."""
    if tp is str:
        return True
    args = typing.get_args(tp)
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and set(args) == {str, type(None)}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error: ``line 3, column 9: expected ',' or ']'``."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def read_yaml(path: str | Path, section: str | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found. Fix: check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)}). Fix: correct the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of field: value")
    if section is not None and section in data and isinstance(data[section], dict):
        data = data[section]
    return data


def parse_sets(sets: list[str] | None, types_: dict[str, Any]) -> dict[str, Any]:
    """``["lr=5e-5", "name=0123"]`` -> ``{"lr": 5e-05, "name": "0123"}`` (string fields keep the text as typed)."""
    parsed: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set lr=5e-5")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        # a string field takes the text as typed (YAML would turn "0123" into 123 and "yes" into True)
        if not raw or _is_str_field(types_.get(key)):
            parsed[key] = raw
            continue
        try:
            parsed[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({yaml_problem(exc)})") from None
    return parsed


def build_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    section: str | None = None,
    source: str = "command line",
) -> T:
    """Build ``cls`` from, lowest precedence first: defaults < ``yaml_path`` < ``--set k=v`` < ``overrides``.

    ``overrides`` are the explicit command-line flags; a value of ``None`` means "flag not given" and is
    ignored. So ``--limit 4 --set limit=6`` gives 4: a flag typed by name always wins. ``source`` names where
    ``overrides`` came from in error messages.
    """
    types_ = _field_types(cls)
    values: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if yaml_path is not None:
        where = f"{yaml_path}" + (f" (section {section!r})" if section else "")
        layers.append((where, read_yaml(yaml_path, section)))
    if sets:
        layers.append(("--set", parse_sets(sets, types_)))
    if overrides:
        layers.append((source, {k: v for k, v in overrides.items() if v is not None}))
    for source, layer in layers:
        for key, val in layer.items():
            if key not in types_:
                known = ", ".join(sorted(types_))
                raise ConfigError(f"{source}: unknown field {key!r} for {cls.__name__}. Known fields: {known}")
            values[key] = _coerce(val, types_[key], key, source)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def describe(cls: type) -> list[tuple[str, str, Any]]:
    """(name, help, default) for every field: used by docs and ``--help`` epilogs."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(factory)"
        out.append((f.name, f.metadata.get("help", ""), default))
    return out


def check(cond: bool, msg: str) -> None:
    """Raise ConfigError(msg) when ``cond`` is false (used in ``__post_init__``)."""
    if not cond:
        raise ConfigError(msg)


DTYPES = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16")
SAVE_DTYPES = ("auto", "fp32", "bf16")  # auto = the stage's training compute dtype
_DEVICE = re.compile(r"^(auto|shard|cpu|mps|cuda(:\d+)?)$")


@dataclasses.dataclass(kw_only=True)
class StageConfig:
    """The fields every stage shares, with one set of checks. Every stage config extends this class.

    A subclass narrows what it accepts with the class attributes ``dtypes`` (e.g. refine trains under
    bf16 autocast over fp32 weights and has no fp16 path) and ``model_required``.
    """

    dtypes: ClassVar[tuple[str, ...]] = DTYPES
    model_required: ClassVar[bool] = True

    model: str = field("", help="Model: embedded name (smollm2-135m), HF directory, dcr stage dir, or hub id.")
    seed: int = field(0, help="Seed of everything random in the stage (sampling, initialisation, order).", ge=0)
    data_dir: str | None = field(None, help="Offline data directory (else $DCR_DATA_DIR, else the copy "
                                                  "vendored with dcr).", nonempty=True)
    dtype: str = field("auto", help="Compute dtype: auto (bf16 where the CPU/GPU has it, else fp32), fp32, bf16, "
                                    "fp16.")
    device: str = field("auto", help="Device: auto, cpu, cuda, cuda:N, or shard (inference only: the model split "
                                      "over every visible GPU with device_map=auto, for models larger than one).")
    template: str = field("auto", help=f"Prompt template: {', '.join(TEMPLATES)}.", choices=TEMPLATES)

    def __post_init__(self) -> None:
        from dcr.validate import validate_fields

        validate_fields(self)
        name = type(self).__name__
        check(bool(self.model) or not self.model_required,
              f"{name}.model is empty. Fix: pass --model NAME_OR_DIR (e.g. smollm2-135m)")
        check(self.dtype in self.dtypes, f"dtype {self.dtype!r} is not accepted by {name}. "
                                         f"Fix: use one of {', '.join(self.dtypes)}")
        check(bool(_DEVICE.match(self.device)),
              f"device {self.device!r} unknown. Fix: use auto, cpu, cuda, cuda:N or shard")
        check(self.template in TEMPLATES, f"template {self.template!r} unknown. Fix: use one of "
                                          f"{', '.join(TEMPLATES)}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    def check_inputs(self) -> None:
        """Resolve what a run will read (model, data directory) so that a bad one fails before anything is
        written. ``run_stage`` calls it; stages with more inputs extend it."""
        from dcr.data import data_dir
        from dcr.models import resolve_model
        from dcr.validate import validate_layers, validate_paths

        validate_paths(self)
        resolve_model(self.model)
        validate_layers(self)
        root, sets = data_dir(self.data_dir), self.data_sets()
        if sets:
            from dcr.data.catalog import check_sets

            check_sets(sets, root)

    def data_sets(self) -> tuple[str, ...]:
        """The sets (``dcr.data.catalog.set_loaders`` names) this stage reads: ``check_inputs`` reads every row
        of each before any weights load, so a damaged file fails first. The stage manifest's
        ``data_files_unchecked`` lists what the stage read beyond them (a test keeps it empty)."""
        return ()
