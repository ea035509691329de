"""One builder for every stage verb: typer options generated from the config dataclass and its ``help=`` texts.

``stage_command(RefineConfig, refine, section="refine")`` returns a typer command with

- ``--out DIR`` (required), ``--config FILE.yaml``, ``--set FIELD=VALUE`` (repeatable), ``--force``, ``--quiet``;
- one option per config field, ``--field-name`` (booleans as ``--x/--no-x``, lists as comma-separated text,
  mappings as repeatable ``KEY=VALUE``), plus any extra names the verb gives (``--n`` for ``n_directions``).

Precedence, lowest first: field defaults < ``--config`` YAML (its ``section`` or top level) < ``--set`` <
explicit flags. The stage's own log lines (``dcr.*`` loggers: progress, "skipped (finished, key …)") go to
stderr unless ``--quiet``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from dcr.config import build_config
from dcr.dist import is_main
from dcr.errors import ConfigError

StageFn = Callable[..., Path]
RESERVED = ("out", "config", "sets", "force", "quiet")


@contextmanager
def console_log(quiet: bool) -> Iterator[None]:
    """Show ``dcr.*`` INFO records on stderr for the block (nothing when ``quiet``)."""
    logger = logging.getLogger("dcr")
    if quiet:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def parse_pairs(items: list[str] | None, option: str) -> dict[str, str] | None:
    """``["method=dcr", "seed=0"]`` -> ``{"method": "dcr", "seed": "0"}``; None when no item was given."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} method=dcr")
        out[key.strip()] = val.strip()
    return out


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _option(f: dataclasses.Field, tp: Any, names: tuple[str, ...], cli_type: Any | None) -> inspect.Parameter:
    """The keyword parameter (typer option, default None = not given) for one config field."""
    base = cli_type or _base_type(tp)
    flag = "--" + f.name.replace("_", "-")
    decls = names or (flag,)
    if base is bool and not any("/" in d for d in decls):
        decls = tuple(f"{d}/--no-{d[2:]}" for d in decls)
    help_text = f.metadata.get("help", "")
    if cli_type is not None:
        pass
    elif typing.get_origin(base) in (list, tuple):
        base, help_text = str, f"{help_text} Comma-separated."
    elif typing.get_origin(base) is dict or base is dict:
        base, help_text = list[str], f"{help_text} KEY=VALUE, repeatable."
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    help_text = f"{help_text} (default: {default})" if default not in ("", None, [], {}) else help_text
    option = typer.Option(None, *decls, help=help_text, show_default=False)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[base])  # noqa: UP045


def _fixed_params(out_help: str, section: str) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("out", kw, annotation=Path, default=typer.Option(..., "--out", help=out_help)),
        inspect.Parameter("config", kw, annotation=Optional[Path], default=typer.Option(  # noqa: UP045
            None, "--config", help=f"YAML file of config fields (a '{section}:' section or top-level fields).")),
        inspect.Parameter("sets", kw, annotation=Optional[list[str]], default=typer.Option(  # noqa: UP045
            None, "--set", help="FIELD=VALUE for any config field (repeatable); an explicit flag wins over it.")),
        inspect.Parameter("force", kw, annotation=bool, default=typer.Option(
            False, "--force", help="Re-run even if OUT holds a finished run with the same key.")),
        inspect.Parameter("quiet", kw, annotation=bool, default=typer.Option(
            False, "--quiet", help="No progress lines on stderr.")),
    ]


def _field_params(fields: list[dataclasses.Field], hints: dict[str, Any], names: dict[str, tuple[str, ...]],
                  cli_types: dict[str, Any], argument: str | None) -> list[inspect.Parameter]:
    """The positional argument (if any) first, then one option per field."""
    params = []
    for f in fields:
        if f.name == argument:
            params.insert(0, inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                               default=typer.Argument(..., help=f.metadata.get("help", ""))))
        else:
            params.append(_option(f, hints[f.name], names.get(f.name, ()), cli_types.get(f.name)))
    return params


def stage_command(
    cls: type,
    stage: StageFn,
    *,
    section: str,
    out_help: str = "Output directory (manifest.json, stage.log, results.jsonl, ...).",
    names: dict[str, tuple[str, ...]] | None = None,
    cli_types: dict[str, Any] | None = None,
    argument: str | None = None,
    exclude: tuple[str, ...] = (),
    extra: list[inspect.Parameter] | None = None,
    adapt: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
    after: Callable[[Path], None] | None = None,
) -> Callable[..., None]:
    """A typer command running ``stage(build_config(cls, ...), out, force=force)`` (see the module docstring).

    ``names`` gives fields other option names, ``cli_types`` another command-line type (parsed by the config),
    ``argument`` makes one field a positional argument, ``exclude`` hides fields the verb does not expose,
    ``extra`` adds parameters that ``adapt(overrides, extra_values)`` folds into the overrides, and ``after``
    runs on the finished stage directory (e.g. to print a table).
    """
    names, cli_types, extra = names or {}, cli_types or {}, extra or []
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in exclude]
    clash = sorted({f.name for f in fields} & set(RESERVED))
    if clash:
        raise TypeError(f"{cls.__name__} fields {clash} clash with the verb's own options")
    params = _field_params(fields, hints, names, cli_types, argument) + _fixed_params(out_help, section) + extra
    field_names = {f.name for f in fields}
    extra_names = {p.name for p in extra}

    def command(**kw: Any) -> None:
        overrides = {k: v for k, v in kw.items() if k in field_names}
        for f in fields:
            if isinstance(overrides.get(f.name), list) and typing.get_origin(_base_type(hints[f.name])) is dict:
                overrides[f.name] = parse_pairs(overrides[f.name], (names.get(f.name) or ("--" + f.name,))[0])
        if adapt is not None:
            overrides = adapt(overrides, {k: kw[k] for k in extra_names})
        cfg = build_config(cls, kw["config"], overrides, kw["sets"], section=section)
        with console_log(kw["quiet"]):
            path = stage(cfg, kw["out"], force=kw["force"])
        if not is_main():  # another rank of a multi-process launch: the main process reports
            return
        if after is not None:
            after(path)
        typer.echo(str(path))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = (stage.__doc__ or "").strip().split("\n\n")[0]
    return command
