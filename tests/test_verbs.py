"""The generated stage verbs: one option per config field, fixed precedence, skip message on stderr."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from dcr.cli import app
from dcr.config import StageConfig, check, field
from dcr.stage import run_stage
from dcr.verbs import stage_command

runner = CliRunner()


@dataclasses.dataclass(kw_only=True)
class ToyConfig(StageConfig):
    limit: int | None = field(None, help="Cap on items.")
    lr: float = field(0.1, help="Learning rate.")
    lora: bool = field(False, help="Use LoRA.")
    layers: list[int] = field(default_factory=list, help="Blocks.")
    tags: dict[str, str] = field(default_factory=dict, help="Extra fields.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")

    def check_inputs(self) -> None:
        """A toy stage reads no model or data."""


def toy_stage(cfg: ToyConfig, out_dir: Path, force: bool = False) -> Path:
    """Toy stage: records its config."""
    seen.append(cfg)
    return run_stage("toy", cfg, out_dir, lambda o: {}, force=force)[0]


seen: list[ToyConfig] = []
toy_app = typer.Typer()
toy_app.command("toy")(stage_command(ToyConfig, toy_stage, section="toy", names={"lora": ("--lora/--full",)}))
toy_app.command("other")(stage_command(ToyConfig, toy_stage, section="toy"))  # two commands: no default verb


def _run(tmp_path: Path, *args: str) -> ToyConfig:
    seen.clear()
    result = runner.invoke(toy_app, ["toy", "--model", "m", "--out", str(tmp_path / "o"), "--force", *args])
    assert result.exit_code == 0, result.output
    return seen[-1]


def test_precedence_flag_over_set_over_yaml_over_default(tmp_path: Path) -> None:
    yml = tmp_path / "c.yaml"
    yml.write_text("toy:\n  limit: 5\n  lr: 0.5\n")
    assert _run(tmp_path).limit is None
    assert _run(tmp_path, "--config", str(yml)).limit == 5
    assert _run(tmp_path, "--config", str(yml), "--set", "limit=6").limit == 6
    cfg = _run(tmp_path, "--config", str(yml), "--set", "limit=6", "--limit", "4")
    assert (cfg.limit, cfg.lr) == (4, 0.5)


def test_types_bool_list_and_mapping(tmp_path: Path) -> None:
    cfg = _run(tmp_path, "--lora", "--layers", "3,4", "--tags", "method=dcr", "--tags", "seed=1")
    assert (cfg.lora, cfg.layers, cfg.tags) == (True, [3, 4], {"method": "dcr", "seed": "1"})
    assert _run(tmp_path, "--full").lora is False


def test_bad_value_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(toy_app, ["toy", "--model", "m", "--out", str(tmp_path / "o"), "--lr", "-1"])
    assert result.exit_code != 0 and "lr must be > 0" in str(result.exception)
    result = runner.invoke(toy_app, ["toy", "--model", "m", "--out", str(tmp_path / "o"), "--dtype", "fp8"])
    assert "dtype 'fp8' is not accepted by ToyConfig" in str(result.exception)


def test_rerun_says_skipped_with_key(tmp_path: Path) -> None:
    args = ["toy", "--model", "m", "--out", str(tmp_path / "o")]
    assert runner.invoke(toy_app, args).exit_code == 0
    second = runner.invoke(toy_app, args)
    assert second.exit_code == 0 and "toy: skipped (finished, key " in second.output
    quiet = runner.invoke(toy_app, [*args, "--quiet"])
    assert "skipped (finished" not in quiet.output


def _verbs() -> dict[str, Any]:
    root = get_command(app)
    out = {name: cmd for name, cmd in root.commands.items() if name != "probe"}  # type: ignore[attr-defined]
    out.update({f"probe {n}": c for n, c in root.commands["probe"].commands.items()})  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("verb,cls,exclude", [
    ("refine", "dcr.refine.config:RefineConfig", ()),
    ("align", "dcr.align.config:AlignConfig", ()),
    ("steer", "dcr.steer.config:SteerConfig", ()),
    ("evaluate", "dcr.evaluate.config:EvaluateConfig", ()),
    ("probe ntk", "dcr.probe.config:NtkConfig", ()),
    ("probe ntk-track", "dcr.probe.config:NtkTrackConfig", ("model", "model_after")),
    ("probe separability", "dcr.probe.config:SeparabilityConfig", ()),
    ("probe mds", "dcr.probe.config:MdsConfig", ()),
])
def test_every_config_field_is_an_option(verb: str, cls: str, exclude: tuple[str, ...]) -> None:
    import importlib

    module, name = cls.split(":")
    config_cls = getattr(importlib.import_module(module), name)
    params = {p.name: p for p in _verbs()[verb].params}
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        assert f.name in params, f"{verb}: no option for {f.name}"
        assert params[f.name].help and f.metadata["help"] in params[f.name].help or \
            params[f.name].param_type_name == "argument", f.name
    assert {"out", "config", "sets", "force", "quiet"} <= set(params)
