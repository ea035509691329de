"""Bad input by class (issue 30): cases generated from the configs themselves, not listed by hand.

Every stage config's fields declare what they accept (``dcr.config.field``: bounds, choices, non-empty). From
that, for every config x every field, this test builds the wrong-type, out-of-range, not-finite, unknown-choice
and empty values, and expects a ConfigError naming the field (``dcr.validate``). A new field or config is
covered without anyone writing a case; a numeric or string field that declares nothing fails
:func:`test_every_field_declares_what_it_accepts`.

Through the command line: every verb x field case gives exit 2, one ``error:`` line naming the field, no
traceback and no output directory. The default suite runs a fixed-seed sample of those; the full enumeration is
marked ``slow`` (``pytest -m slow tests/test_validation.py``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from dcr.align.config import AlignConfig
from dcr.config import StageConfig, build_config
from dcr.errors import ConfigError
from dcr.evaluate.config import EvaluateConfig
from dcr.probe.config import ConfoundConfig, MdsConfig, NtkConfig, NtkTrackConfig, SeparabilityConfig
from dcr.refine.config import RefineConfig
from dcr.steer.config import SteerConfig

# verb argv prefix -> its config class (every stage verb of the CLI)
VERBS: dict[tuple[str, ...], type] = {
    ("refine",): RefineConfig, ("align",): AlignConfig, ("evaluate",): EvaluateConfig,
    ("steer", "surgical"): SteerConfig, ("probe", "ntk"): NtkConfig, ("probe", "separability"): SeparabilityConfig,
    ("probe", "mds"): MdsConfig, ("probe", "confound"): ConfoundConfig,
}
CONFIGS = sorted({*VERBS.values(), NtkTrackConfig}, key=lambda c: c.__name__)
# fields checked elsewhere, on purpose: the model (resolved against the hub, a directory or an embedded name),
# dtype (each config's own ClassVar list) and device (a pattern), all in StageConfig.__post_init__
CHECKED_ELSEWHERE = {"model", "dtype", "device"}
# fields whose empty value means something documented
EMPTY_MEANS = {"layers": "the verb's default blocks", "extra_judges": "no extra judge", "tags": "no tags",
               "checkpoints": "checked by NtkTrackConfig (none given is an error there)"}


def _base(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, _base(hints[f.name])) for f in dataclasses.fields(cls) if f.name not in CHECKED_ELSEWHERE]


def bad_values(f: dataclasses.Field, tp: Any) -> list[tuple[str, str]]:
    """(case, --set text) values the field must reject, from its type and declared metadata."""
    meta, out = f.metadata, []
    number = tp in (int, float) or (typing.get_origin(tp) in (list, tuple) and
                                    (typing.get_args(tp) or (None,))[0] in (int, float))
    item = (typing.get_args(tp) or (None,))[0] if typing.get_origin(tp) in (list, tuple) else tp
    wrap = (lambda v: f"[{v}]") if typing.get_origin(tp) in (list, tuple) else (lambda v: v)
    if item in (int, float):
        out.append(("wrong type", wrap("abc")))
    if item is int:
        out.append(("not an integer", wrap("1.5")))
    if item is float:
        out += [("not finite", wrap(".nan")), ("not finite", wrap(".inf"))]
    if tp is bool:
        out.append(("wrong type", "maybe"))
    if number:
        for key, bound in (meta.get("bounds") or {}).items():
            step = 1 if item is int else 1e-3 * max(1.0, abs(bound))
            outside = {"ge": bound - step, "gt": bound, "le": bound + step, "lt": bound}[key]
            text = str(int(outside)) if item is int else repr(float(outside))
            out.append((f"out of range ({key} {bound:g})", wrap(text)))
    if meta.get("choices") is not None:
        out.append(("unknown choice", wrap("no-such-choice")))
    if meta.get("nonempty"):
        out.append(("empty", "[]" if typing.get_origin(tp) in (list, tuple) else ""))
    return out


def cases() -> list[tuple[type, str, str, str]]:
    return [(cls, f.name, case, value) for cls in CONFIGS for f, tp in _fields(cls)
            for case, value in bad_values(f, tp)]


def _build(cls: type, name: str, value: str) -> Any:
    base = [] if cls is NtkTrackConfig else ["model=m"]
    extra = ["checkpoints=[c]"] if cls is NtkTrackConfig and name != "checkpoints" else \
        ["refine_stage=r"] if cls is ConfoundConfig and name != "refine_stage" else []
    return build_config(cls, None, None, [*base, *extra, f"{name}={value}"])


def test_every_field_declares_what_it_accepts() -> None:
    """Numbers declare bounds, strings choices or non-empty, lists non-empty (or say what empty means)."""
    missing = []
    for cls in CONFIGS:
        for f, tp in _fields(cls):
            meta = f.metadata
            item = (typing.get_args(tp) or (None,))[0] if typing.get_origin(tp) in (list, tuple) else tp
            if item in (int, float) and not meta.get("bounds"):
                missing.append(f"{cls.__name__}.{f.name}: no bounds")
            elif tp is str and meta.get("choices") is None and not meta.get("nonempty"):
                missing.append(f"{cls.__name__}.{f.name}: no choices and not non-empty")
            elif typing.get_origin(tp) in (list, tuple) and not meta.get("nonempty") and f.name not in EMPTY_MEANS:
                missing.append(f"{cls.__name__}.{f.name}: a list that may be empty, meaning what?")
    assert not missing, "\n".join(missing)


def test_there_are_generated_cases_for_every_config() -> None:
    found = cases()
    assert {c[0] for c in found} == set(CONFIGS) and len(found) >= 300, len(found)


@pytest.mark.parametrize("cls,name,case,value", cases(),
                         ids=[f"{c[0].__name__}.{c[1]}:{c[2]}:{c[3]}" for c in cases()])
def test_a_bad_value_is_a_config_error_naming_the_field(cls: type, name: str, case: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _build(cls, name, value)
    message = str(exc.value)
    assert name in message and "\n" not in message, message
    assert "Fix" in message or "must be" in message, message


def test_the_edge_of_every_range_is_accepted() -> None:
    """The declared bound itself (ge / le) is accepted: the bounds are not off by one."""
    checked = 0
    for cls in CONFIGS:
        for f, tp in _fields(cls):
            if tp not in (int, float):
                continue
            for key, bound in (f.metadata.get("bounds") or {}).items():
                if key in ("ge", "le"):
                    try:
                        _build(cls, f.name, str(int(bound)) if tp is int else repr(float(bound)))
                    except ConfigError as exc:
                        assert f"{cls.__name__}.{f.name} must" not in str(exc), str(exc)
                    checked += 1
    assert checked >= 50


def test_numbers_are_finite_everywhere(tmp_path: Path) -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match="RefineConfig.gamma must be a finite number"):
            RefineConfig(model="m", layer=1, gamma=value)


# ------------------------------------------------------------------ through the command line

# a field the verb itself fixes (the positional argument: an explicit value, which outranks --set by design)
FIXED_BY_VERB = {(("steer", "surgical"), "method")}


def cli_cases() -> list[tuple[tuple[str, ...], str, str, str]]:
    out = []
    for verb, cls in VERBS.items():
        out += [(verb, f.name, case, value) for f, tp in _fields(cls) for case, value in bad_values(f, tp)
                if (verb, f.name) not in FIXED_BY_VERB]
    return out


SAMPLE = random.Random(0).sample(cli_cases(), 40)


def _cli(verb: tuple[str, ...], name: str, value: str, tmp_path: Path, tiny_dir: Path,
         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dcr.cli import main

    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["dcr", *verb, "--model", str(tiny_dir), "--out", str(out),
                                      "--set", f"{name}={value}"])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert exc.value.code == 2 and "Traceback" not in captured.out + err, err
    assert err.startswith("error: ") and "\n" not in err and name in err, err
    assert not out.exists()  # validation came first: nothing was written


@pytest.mark.parametrize("verb,name,case,value", SAMPLE, ids=[f"{' '.join(c[0])}:{c[1]}:{c[2]}" for c in SAMPLE])
def test_cli_sample(verb: tuple[str, ...], name: str, case: str, value: str, tmp_path: Path, tiny_dir: Path,
                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _cli(verb, name, value, tmp_path, tiny_dir, monkeypatch, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("verb,name,case,value", cli_cases(),
                         ids=[f"{' '.join(c[0])}:{c[1]}:{c[2]}:{c[3]}" for c in cli_cases()])
def test_cli_every_case(verb: tuple[str, ...], name: str, case: str, value: str, tmp_path: Path, tiny_dir: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _cli(verb, name, value, tmp_path, tiny_dir, monkeypatch, capsys)


def test_stage_config_subclasses_are_all_covered() -> None:
    """A new stage config must join CONFIGS (and a verb VERBS)."""
    import dcr.cli  # noqa: F401  (imports every stage package)

    def subclasses(cls: type) -> set[type]:
        return {s for c in cls.__subclasses__() for s in (c, *subclasses(c))}

    known = {*CONFIGS, *(b for c in CONFIGS for b in c.__mro__)}
    stray = {c.__name__ for c in subclasses(StageConfig) if c not in known and c.__module__.startswith("dcr.")}
    assert not stray, stray


# ------------------------------------------------------------------ path fields

PATH_VERBS = {**VERBS, ("probe", "ntk-track"): NtkTrackConfig}


def path_cases() -> list[tuple[tuple[str, ...], str, str, str]]:
    """(verb, field, case, kind) for every path field: missing, and the wrong kind of thing."""
    out = []
    for verb, cls in PATH_VERBS.items():
        for f, _ in _fields(cls):
            kind = f.metadata.get("path")
            if kind:
                wrong = "dir-for-file" if kind == "file" else "file-for-dir"
                missing = [] if kind == "cache-dir" else [(verb, f.name, "missing", kind)]  # a cache is created
                out += [*missing, (verb, f.name, wrong, kind)]
    return out


def test_the_path_fields_are_enumerated() -> None:
    fields = {(c[0][-1], c[1]) for c in path_cases()}
    assert {("align", "exclude_from"), ("align", "general_file"), ("align", "teacher_cache"),
            ("evaluate", "steer"), ("ntk-track", "checkpoints")} <= fields


@pytest.mark.parametrize("verb,name,case,kind", path_cases(), ids=[f"{' '.join(c[0])}:{c[1]}:{c[2]}"
                                                                    for c in path_cases()])
def test_a_bad_path_is_refused_before_anything_runs(verb: tuple[str, ...], name: str, case: str, kind: str,
                                                    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from dcr.cli import main

    a_file, a_dir = tmp_path / "a.jsonl", tmp_path / "adir"
    a_file.write_text("{}\n")
    a_dir.mkdir()
    value = {"missing": tmp_path / "nowhere", "dir-for-file": a_dir, "file-for-dir": a_file}[case]
    out = tmp_path / "out"
    head = [] if verb == ("probe", "ntk-track") else ["--model", str(tiny_dir)]
    monkeypatch.setattr(sys, "argv", ["dcr", *verb, *head, "--out", str(out), "--set", f"{name}={value}"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert f".{name}: {value}" in err and "Fix: give" in err, err
    assert not out.exists()


# ------------------------------------------------------------------ layer indices against the model

def layer_cases() -> list[tuple[tuple[str, ...], str, str]]:
    """(verb, field, value) for every layer field: one past the tiny model's 4 blocks (index 4, count 5)."""
    out = []
    for verb, cls in VERBS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = f.metadata.get("layer")
            if kind:
                value = "5" if kind == "count" else "4"
                out.append((verb, f.name, f"[{value}]" if typing.get_origin(_base(hints[f.name])) is list else value))
    return out


def test_the_layer_fields_are_enumerated() -> None:
    assert {(c[0][-1], c[1]) for c in layer_cases()} >= {("refine", "layer"), ("surgical", "layer"),
                                                         ("surgical", "layers"), ("surgical", "classify_layers"),
                                                         ("ntk", "ntk_layers"), ("separability", "layers"),
                                                         ("mds", "layers")}


@pytest.mark.parametrize("verb,name,value", layer_cases(), ids=[f"{' '.join(c[0])}:{c[1]}" for c in layer_cases()])
def test_a_layer_beyond_the_model_is_refused_before_weights_load(verb: tuple[str, ...], name: str, value: str,
                                                                 tmp_path: Path, tiny_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import dcr.models
    from dcr.cli import main

    monkeypatch.setattr(dcr.models, "load_model", lambda *a, **k: pytest.fail("weights loaded before the check"))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["dcr", *verb, "--model", str(tiny_dir), "--out", str(out), "--set",
                                      f"{name}={value}"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert f".{name} " in err and "out of range" in err and "has blocks 0..3" in err, err
    assert not out.exists()


# ------------------------------------------------------------------ spec strings, each part empty

def _blank_each_part(template: list[str], sep: str) -> list[str]:
    """``["hf:o/n", "s", "c", "unsafe"]`` -> the spec with each part in turn left empty."""
    return [sep.join(p if j != i else "" for j, p in enumerate(template)) for i in range(len(template))]


SPEC_CASES = [
    *[("benchmarks", f"[{s}]") for s in ["hf:", "hf:/name", "hf:owner/", "hf:owner/name/x",
                                         "hf:o/n:train:prompt:safe:extra", "hf:o/n:train:prompt:maybe",
                                         *_blank_each_part(["hf:o/n", "train", "prompt", "unsafe"], ":")[1:]]],
    *[(f, s) for f in ("judge", "safety_judge") for s in ["guard:", "http:", "http:#model", "http:http://h#",
                                                         "keyword:x", "nope"]],
    *[("annotator", s) for s in ["http:", "http:#m", "http:http://h#", "local:", "ftp:x"]],
]


@pytest.mark.parametrize("name,value", SPEC_CASES, ids=[f"{c[0]}={c[1]}" for c in SPEC_CASES])
def test_a_spec_with_an_empty_or_missing_part_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _build(EvaluateConfig, name, value)
    message = str(exc.value)
    assert "Fix:" in message and "\n" not in message, message


def test_a_full_spec_parses() -> None:
    from dcr.specs import HubSpec, parse_annotator, parse_hub

    assert parse_hub("hf:o/n:test:text:unsafe") == HubSpec("o/n", "test", "text", "unsafe")
    assert parse_hub("hf:o/n") == HubSpec("o/n")
    assert parse_annotator("http:http://h:8000/v1#m") == ("http", "http://h:8000/v1", "m")
    cfg = _build(EvaluateConfig, "judge", "http:http://h:8000/v1#m")
    assert cfg.judge == "http:http://h:8000/v1#m"


# ------------------------------------------------------------------ the experiment file's own fields

def experiment_cases() -> list[tuple[str, str, str]]:
    """(field, case, YAML value) for every declared top-level field of an experiment file (``dcr run``)."""
    from dcr.pipeline.experiment import TOP_KEYS, Experiment

    hints = typing.get_type_hints(Experiment)
    return [(f.name, case, value) for f in dataclasses.fields(Experiment) if f.name in TOP_KEYS
            for case, value in bad_values(f, _base(hints[f.name]))]


def test_every_experiment_key_declares_what_it_accepts() -> None:
    names = {c[0] for c in experiment_cases()}
    assert {"name", "models", "methods", "seeds", "benchmarks", "exclude_refine_toxic", "stages_dir",
            "stage_processes"} <= names, names


@pytest.mark.parametrize("name,case,value", experiment_cases(), ids=[f"{c[0]}:{c[1]}" for c in experiment_cases()])
def test_a_bad_experiment_value_is_refused_naming_the_key(name: str, case: str, value: str) -> None:
    import yaml

    from dcr.pipeline.experiment import parse_experiment

    data = {"models": ["m"], name: yaml.safe_load(value) if value else value}
    with pytest.raises(ConfigError, match=rf"exp\.yaml: .*\b{name}\b") as exc:
        parse_experiment(data, "exp.yaml")
    assert "\n" not in str(exc.value) and "Fix:" in str(exc.value)
