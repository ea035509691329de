"""One validation layer for every stage config: each field checked by its type and by what it declares beside
itself (``dcr.config.field``: bounds, choices, non-empty), before any model or data is loaded.

``StageConfig.__post_init__`` calls :func:`validate_fields` first, so every verb, ``dcr run`` stage and Python
caller passes through it; a config's own ``__post_init__`` then checks what involves several fields. Errors are
one line: ``RefineConfig.batch_size must be >= 4, got 2. Fix: ...`` with the field's help.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
import types
import typing
from pathlib import Path
from typing import Any

from dcr.errors import ConfigError

BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def _base(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), type(None) in typing.get_args(tp)
    return tp, False


def describe_bounds(bounds: dict[str, float]) -> str:
    """``{"gt": 0, "lt": 1}`` -> ``"a number in (0, 1)"``; one bound -> ``">= 1"``."""
    lo = next(((k, v) for k, v in bounds.items() if k in ("ge", "gt")), None)
    hi = next(((k, v) for k, v in bounds.items() if k in ("le", "lt")), None)
    if lo and hi:
        return f"a number in {'[' if lo[0] == 'ge' else '('}{lo[1]:g}, {hi[1]:g}{']' if hi[0] == 'le' else ')'}"
    key, value = lo or hi  # type: ignore[misc]
    return f"{BOUNDS[key][1]} {value:g}"


def _fail(cfg: Any, f: dataclasses.Field, got: Any, need: str) -> None:
    help_text = f.metadata.get("help", "").split(". ")[0].rstrip(".")
    raise ConfigError(f"{type(cfg).__name__}.{f.name} must be {need}, got {got!r}. Fix: give {f.name} "
                      f"{need}" + (f" ({help_text})" if help_text else ""))


def _check_scalar(cfg: Any, f: dataclasses.Field, tp: Any, value: Any) -> None:
    """Type, finiteness, bounds and choices of one value (a field, or one item of a list field)."""
    meta = f.metadata
    if tp is bool:
        if not isinstance(value, bool):
            _fail(cfg, f, value, "true or false")
        return
    if tp in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (tp is float or
                                                                                isinstance(value, int))
        if not ok:
            _fail(cfg, f, value, "an integer" if tp is int else "a number")
        if not math.isfinite(value):
            _fail(cfg, f, value, "a finite number")
        bounds = meta.get("bounds") or {}
        if not all(BOUNDS[key][0](value, bound) for key, bound in bounds.items()):
            _fail(cfg, f, value, describe_bounds(bounds))
    elif tp is str and not isinstance(value, str):
        _fail(cfg, f, value, "a string")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        _fail(cfg, f, value, "one of " + ", ".join(map(str, choices)))


def validate_fields(cfg: Any) -> None:
    """Check every field of ``cfg`` by its annotated type and its declared bounds, choices and non-emptiness."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        tp, optional = _base(hints[f.name])
        if value is None:
            if not optional:
                _fail(cfg, f, value, "a value (it cannot be null)")
            continue
        origin = typing.get_origin(tp)
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                _fail(cfg, f, value, "a list")
            if f.metadata.get("nonempty") and not value:
                _fail(cfg, f, value, "a non-empty list")
            inner = (typing.get_args(tp) or (Any,))[0]
            for item in value:
                _check_scalar(cfg, f, inner, item)
        elif origin is dict or tp is dict:
            if not isinstance(value, dict):
                _fail(cfg, f, value, "a mapping")
        else:
            if f.metadata.get("nonempty") and isinstance(value, str) and not value.strip():
                _fail(cfg, f, value, "a non-empty string")
            _check_scalar(cfg, f, tp, value)


PATH_KINDS = {"file": "an existing, readable file", "dir": "an existing, readable directory",
              "cache-dir": "a writable directory (or one that can be created)"}  # kind -> what the fix asks for


def _path_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot serve as ``kind``, or None."""
    if kind == "cache-dir":
        if path.exists() and not path.is_dir():
            return "is a file, not a directory"
        probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
        return None if os.access(probe, os.W_OK) else f"cannot be written ({probe} is not writable)"
    if not path.exists():
        return "does not exist"
    if kind == "file" and not path.is_file():
        return "is a directory, not a file" if path.is_dir() else "is not a regular file"
    if kind == "dir" and not path.is_dir():
        return "is a file, not a directory"
    return None if os.access(path, os.R_OK) else "cannot be read"


def validate_paths(cfg: Any) -> None:
    """Check every path field (``field(path=...)``) for existence, kind and access; ConfigError naming it."""
    for f in dataclasses.fields(cfg):
        kind, value = f.metadata.get("path"), getattr(cfg, f.name)
        if kind is None or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            problem = _path_problem(Path(str(item)).expanduser(), kind)
            if problem:
                raise ConfigError(f"{type(cfg).__name__}.{f.name}: {item} {problem}. Fix: give {f.name} "
                                  f"{PATH_KINDS[kind]}")


def validate_layers(cfg: Any) -> None:
    """Check every layer field (``field(layer="index" | "count")``) against the model's config, before weights
    load: block indices in ``0..n-1``, counts of blocks at most ``n``."""
    fields = [(f, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.metadata.get("layer")]
    fields = [(f, v) for f, v in fields if v not in (None, [], ())]
    if not fields:
        return
    from dcr.models import model_config, num_layers

    n = num_layers(model_config(cfg.model))
    for f, value in fields:
        items = value if isinstance(value, (list, tuple)) else [value]
        count = f.metadata["layer"] == "count"
        bad = [i for i in items if (i > n if count else i >= n)]
        if bad:
            shown = bad[0] if not isinstance(value, (list, tuple)) else bad
            what = f"at most {n}" if count else f"between 0 and {n - 1}"
            raise ConfigError(f"{type(cfg).__name__}.{f.name} {shown} out of range: {cfg.model} has blocks "
                              f"0..{n - 1}. Fix: pass --{f.name.replace('_', '-')} {what}")
