"""build_config precedence, errors that name the file/field, coercion, and config_hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dcr.config import build_config, check, config_hash, describe, field
from dcr.errors import ConfigError


@dataclasses.dataclass
class ToyConfig:
    model: str = field("tiny", help="model")
    lr: float = field(1e-3, help="learning rate")
    steps: int = field(10, help="steps")
    use_bf16: bool = field(False, help="bf16")
    layers: list[int] = field(default_factory=lambda: [1, 2], help="layers")
    steer: str | None = field(None, help="optional dir")
    tags: dict = field(default_factory=dict, help="tags")
    seed: int = field(0, help="seed")

    def __post_init__(self) -> None:
        check(self.steps > 0, f"steps must be > 0, got {self.steps}")


def _yaml(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    cfg = build_config(ToyConfig)
    assert cfg == ToyConfig()
    assert cfg.layers == [1, 2] and cfg.steer is None


def test_precedence(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "lr: 0.5\nsteps: 20\nmodel: from-yaml\nseed: 7\n")
    cfg = build_config(ToyConfig, y)
    assert (cfg.lr, cfg.steps, cfg.model, cfg.seed, cfg.use_bf16) == (0.5, 20, "from-yaml", 7, False)
    cfg = build_config(ToyConfig, y, overrides={"steps": 30, "model": "from-cli"})
    assert (cfg.lr, cfg.steps, cfg.model, cfg.seed) == (0.5, 30, "from-cli", 7)
    # an explicit flag wins over --set, which wins over the YAML file (--limit 4 --set limit=6 gives 4)
    cfg = build_config(ToyConfig, y, overrides={"steps": 30, "model": "from-cli"}, sets=["steps=40", "use-bf16=true"])
    assert (cfg.lr, cfg.steps, cfg.model, cfg.seed, cfg.use_bf16) == (0.5, 30, "from-cli", 7, True)
    cfg = build_config(ToyConfig, y, overrides={"steps": None}, sets=["steps=40", "lr=0.25"])
    assert (cfg.lr, cfg.steps) == (0.25, 40)


def test_none_overrides_ignored(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "steps: 20\nsteer: some/dir\n")
    cfg = build_config(ToyConfig, y, overrides={"steps": None, "steer": None, "lr": None})
    assert cfg.steps == 20 and cfg.steer == "some/dir" and cfg.lr == 1e-3


def test_section(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "refine:\n  steps: 3\nalign:\n  steps: 4\n")
    assert build_config(ToyConfig, y, section="refine").steps == 3
    assert build_config(ToyConfig, y, section="align").steps == 4


def test_unknown_yaml_key_names_file_and_known_fields(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "stepz: 3\n", name="exp.yaml")
    with pytest.raises(ConfigError) as exc:
        build_config(ToyConfig, y)
    msg = str(exc.value)
    assert str(y) in msg and "'stepz'" in msg and "ToyConfig" in msg
    for name in ("lr", "steps", "model", "use_bf16", "layers", "seed"):
        assert name in msg.split("Known fields:")[1]


def test_unknown_set_and_malformed_set() -> None:
    with pytest.raises(ConfigError, match="--set: unknown field 'nope'"):
        build_config(ToyConfig, sets=["nope=1"])
    with pytest.raises(ConfigError, match="expected FIELD=VALUE"):
        build_config(ToyConfig, sets=["steps"])


@pytest.mark.parametrize(
    ("text", "field_name"),
    [("steps: many\n", "steps"), ("lr: fast\n", "lr"), ("use_bf16: maybe\n", "use_bf16"),
     ("layers: 3\n", "layers"), ("layers: [1, x]\n", "layers"), ("tags: [1]\n", "tags"), ("steps: 2.5\n", "steps")],
)
def test_coercion_errors_name_field_and_file(tmp_path: Path, text: str, field_name: str) -> None:
    y = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        build_config(ToyConfig, y)
    assert f"field {field_name!r}" in str(exc.value) and str(y) in str(exc.value)


def test_coercion_from_strings() -> None:
    cfg = build_config(ToyConfig, overrides={"steps": "5", "lr": "2e-5", "use_bf16": "yes", "layers": "3,4",
                                             "steer": "none"})
    assert cfg.steps == 5 and cfg.lr == pytest.approx(2e-5) and cfg.use_bf16 is True
    assert cfg.layers == [3, 4] and cfg.steer is None
    cfg = build_config(ToyConfig, sets=["steer=a/b", "layers=[5,6]", "lr=1", "tags={x: 1}"])
    assert cfg.steer == "a/b" and cfg.layers == [5, 6] and isinstance(cfg.lr, float) and cfg.tags == {"x": 1}


def test_post_init_check_is_config_error() -> None:
    with pytest.raises(ConfigError, match="steps must be > 0"):
        build_config(ToyConfig, overrides={"steps": 0})


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_config(ToyConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(ToyConfig, _yaml(tmp_path, "steps: [1, 2\n"))
    with pytest.raises(ConfigError, match="mapping"):
        build_config(ToyConfig, _yaml(tmp_path, "- 1\n- 2\n", "list.yaml"))
    assert build_config(ToyConfig, _yaml(tmp_path, "", "empty.yaml")) == ToyConfig()


def test_config_hash_stable_and_sensitive() -> None:
    a = ToyConfig()
    h = config_hash(a)
    assert h == config_hash(ToyConfig()) and len(h) == 16
    assert h != config_hash(dataclasses.replace(a, lr=2e-3))
    assert h != config_hash(dataclasses.replace(a, layers=[1, 3]))
    assert h != config_hash(a, extra={"upstream": "abc"})
    assert config_hash(a, extra={"x": 1, "y": 2}) == config_hash(a, extra={"y": 2, "x": 1})
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})


def test_describe_lists_help() -> None:
    rows = {name: (hlp, default) for name, hlp, default in describe(ToyConfig)}
    assert rows["lr"] == ("learning rate", 1e-3)
    assert rows["layers"] == ("layers", "(factory)")


def test_set_keeps_strings_as_typed() -> None:
    cfg = build_config(ToyConfig, sets=["model=0123", "steer=yes"])
    assert cfg.model == "0123" and cfg.steer == "yes"
    assert build_config(ToyConfig, sets=["steer=null"]).steer is None
    assert build_config(ToyConfig, sets=["steps=0x10"]).steps == 16  # non-string fields still parse as YAML
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(ToyConfig, sets=["tags={a: [1"])


@pytest.mark.parametrize(("text", "field_name"),
                         [("steps: true\n", "steps"), ("lr: false\n", "lr"), ("model: [a, b]\n", "model"),
                          ("model: {a: 1}\n", "model")])
def test_no_silent_bool_or_container_coercion(tmp_path: Path, text: str, field_name: str) -> None:
    with pytest.raises(ConfigError, match=f"field {field_name!r}"):
        build_config(ToyConfig, _yaml(tmp_path, text))
